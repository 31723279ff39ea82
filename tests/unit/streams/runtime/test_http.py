"""The worker endpoint's rules (binding, tokens) and answers, served from a fixed lag report."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agents.pipeline import STAGE_INPUTS
from streams.ops.consumer_lag import build_report
from streams.runtime.http import InsecureBinding, authorized, build_app, check_binding, render_metrics
from streams.settings import Settings, WorkerSettings, overlay

SETTINGS = overlay(Settings(), {"kafka": {"topic_prefix": "p."}, "worker": {"app_id": "app"}})
REPORT = build_report(
    SETTINGS,
    {"p.seeds": 1, "p.metadata": 1},
    {},
    {TopicPartition("p.seeds", 0): 9, TopicPartition("p.metadata", 0): 4},
    {"app-encode": {TopicPartition("p.seeds", 0): 6}},
    taken_at=1.0,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_binding(host, None)
    WorkerSettings(http_host=host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "worker.example"])
def test_any_other_address_needs_a_token(host):
    with pytest.raises(InsecureBinding, match="without a token"):
        check_binding(host, None)
    with pytest.raises(ValidationError, match="set http_token"):
        WorkerSettings(http_host=host)
    check_binding(host, "t")
    assert WorkerSettings(http_host=host, http_token="t").http_token.get_secret_value() == "t"
    assert "tok3n" not in repr(WorkerSettings(http_host=host, http_token="tok3n"))  # SecretStr hides it
    WorkerSettings(http_host=host, http_enabled=False)  # nothing listens: nothing to protect


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer tok", True),
        ("bearer tok", True),
        ("Bearer  tok ", True),
        ("Bearer nope", False),
        ("tok", False),
        (None, False),
    ],
)
def test_bearer_header(header, ok):
    assert authorized(header, "tok") is ok
    assert authorized(header, None) is True  # no token configured (loopback): open


def metric_samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_metrics_text_has_lag_per_stage_and_partition():
    found = metric_samples(render_metrics(REPORT).decode())
    assert found[("codeclm_lag_up", ())] == 1
    assert found[("codeclm_stage_lag", (("stage", "encode"),))] == 3
    assert found[("codeclm_stage_lag", (("stage", "decode"),))] == 4  # nothing committed: from the log start
    labels = (("partition", "0"), ("stage", "encode"), ("topic", "p.seeds"))
    assert found[("codeclm_partition_committed_offset", labels)] == 6
    assert found[("codeclm_partition_log_end_offset", labels)] == 9
    decode = (("partition", "0"), ("stage", "decode"), ("topic", "p.metadata"))
    assert ("codeclm_partition_committed_offset", decode) not in found
    assert {k[1] for k in found if k[0] == "codeclm_stage_lag"} == {(("stage", s),) for s in STAGE_INPUTS}


def test_metrics_text_without_the_broker_says_lag_is_down_and_keeps_the_rest():
    text = render_metrics(None).decode()
    found = metric_samples(text)
    assert found[("codeclm_lag_up", ())] == 0
    assert not any(k[0] == "codeclm_stage_lag" for k in found)
    assert "# TYPE codeclm_records_total counter" in text


async def serve(lag, token=None) -> TestClient:
    client = TestClient(TestServer(build_app(lag, token, ["encode"])))
    await client.start_server()
    return client


async def test_endpoints_answer_and_guard_with_the_token():
    async def lag():
        return REPORT

    client = await serve(lag, token="tok")
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/lag")).status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer bad"})).status == 401
        r = await client.get("/lag", headers={"Authorization": "Bearer tok"})
        assert r.status == 200 and (await r.json())["total_lag"] == REPORT.total == 7
        r = await client.get("/metrics", headers={"Authorization": "Bearer tok"})
        assert r.status == 200 and "codeclm_stage_lag" in await r.text()
    finally:
        await client.close()


async def test_broker_away_gives_503_on_lag_and_lag_up_0_on_metrics():
    async def lag():
        raise KafkaConnectionError("no broker")

    client = await serve(lag)
    try:
        assert (await client.get("/lag")).status == 503
        r = await client.get("/metrics")
        assert r.status == 200 and "codeclm_lag_up 0.0" in await r.text()
    finally:
        await client.close()
