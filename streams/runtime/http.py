"""The worker's HTTP endpoint: `/healthz`, `/metrics` (Prometheus text) and `/lag` (JSON).

`/metrics` renders streams.runtime.metrics.REGISTRY (what the stages and the LLM client count) and adds
lag gauges asked of the broker at scrape time (streams.ops.consumer_lag), so lag stays right while the
worker is idle or stuck. Bound to loopback by default; any other address needs a bearer token,
which `/metrics` and `/lag` then require (`/healthz` tells nothing and stays open for probes).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import mode
from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.ops.consumer_lag import LagProbe, LagReport
from streams.runtime import metrics
from streams.settings import Settings, is_loopback

log = logging.getLogger("codeclm.web")

LagSource = Callable[[], Awaitable[LagReport]]
URL_FILE = "http-url"


class InsecureBinding(ValueError):
    """The endpoint would be reachable from other machines without a token."""


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise InsecureBinding(
            f"the worker's HTTP endpoint would listen on {host} without a token: set CODECLM_WORKER__HTTP_TOKEN "
            "(clients send `Authorization: Bearer <token>`), or bind 127.0.0.1"
        )


def authorized(header: str | None, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class LagCollector(Collector):
    """Lag gauges from one broker snapshot (None: the broker could not be asked)."""

    def __init__(self, report: LagReport | None):
        self.report = report

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("codeclm_lag_up", "1 if the broker answered the lag query of this scrape")
        up.add_metric([], 1 if self.report is not None else 0)
        yield up
        if self.report is None:
            return
        stage_lag = GaugeMetricFamily(
            "codeclm_stage_lag", "Records on a stage's input topics not yet committed by its group", labels=["stage"]
        )
        part_lag = GaugeMetricFamily(
            "codeclm_partition_lag", "Log-end minus committed offset", labels=["stage", "topic", "partition"]
        )
        log_end = GaugeMetricFamily(
            "codeclm_partition_log_end_offset", "Log-end offset", labels=["stage", "topic", "partition"]
        )
        committed = GaugeMetricFamily(
            "codeclm_partition_committed_offset",
            "Committed offset of the stage's group (absent: none yet)",
            labels=["stage", "topic", "partition"],
        )
        for s in self.report.stages:
            stage_lag.add_metric([s.stage], s.lag)
            for p in s.partitions:
                labels = [s.stage, p.topic, str(p.partition)]
                part_lag.add_metric(labels, p.lag)
                log_end.add_metric(labels, p.log_end)
                if p.committed is not None:
                    committed.add_metric(labels, p.committed)
        yield from (stage_lag, part_lag, log_end, committed)


def render_metrics(report: LagReport | None) -> bytes:
    lag = CollectorRegistry(auto_describe=False)
    lag.register(LagCollector(report))
    return generate_latest(metrics.REGISTRY) + generate_latest(lag)


class BrokerLag:
    """Lag snapshots for the endpoint: one probe kept open, reopened after a failure, and a
    snapshot reused for `min_interval` seconds so frequent scrapes do not load the broker."""

    def __init__(self, settings: Settings, min_interval: float = 1.0):
        self.settings = settings
        self.min_interval = min_interval
        self._probe: LagProbe | None = None
        self._last: tuple[float, LagReport] | None = None

    async def __call__(self) -> LagReport:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.min_interval:
            return self._last[1]
        if self._probe is None:
            probe = LagProbe(self.settings, coordinator_timeout=5.0)
            await probe.__aenter__()
            self._probe = probe
        try:
            report = await self._probe.snapshot()
        except BaseException:
            await self.close()  # a fresh connection next time
            raise
        self._last = (now, report)
        return report

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            await probe.__aexit__(None, None, None)


def build_app(lag: LagSource, token: str | None, stages: Sequence[str]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "stages": list(stages)})

    async def lag_report() -> LagReport | None:
        try:
            return await lag()
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker is away: say so, keep serving
            log.warning("lag query failed: %s: %s", type(exc).__name__, exc)
            return None

    async def metrics_view(request: web.Request) -> web.Response:
        body = render_metrics(await lag_report())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def lag_view(request: web.Request) -> web.Response:
        report = await lag_report()
        if report is None:
            return web.json_response({"error": "the broker did not answer the lag query"}, status=503)
        return web.json_response(report.to_dict())

    @web.middleware
    async def bearer(request: web.Request, handler):
        if request.path != "/healthz" and not authorized(request.headers.get("Authorization"), token):
            return web.json_response(
                {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    app = web.Application(middlewares=[bearer])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/lag", lag_view)
    return app


class WorkerHTTP(mode.Service):
    """The endpoint as a service of the Faust worker: up while the worker runs."""

    def __init__(self, settings: Settings, stages: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        worker = settings.worker
        self.host, self.port = worker.http_host, worker.http_port
        self.token = worker.http_token.get_secret_value() if worker.http_token else None
        check_binding(self.host, self.token)  # Settings refuses this too; never serve it open
        self.lag = BrokerLag(settings)
        self.app = build_app(self.lag, self.token, stages)
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self.url_file = settings.worker.data_dir / URL_FILE

    async def on_start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise RuntimeError(
                f"the worker's HTTP endpoint cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "set CODECLM_WORKER__HTTP_PORT to a free port, or 0 to pick one"
            ) from exc
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        log.info("HTTP endpoint on %s (/healthz, /metrics, /lag)", self.url)
        # Where `codeclm status` finds this worker when no --url is given.
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        self.url_file.write_text(self.url + "\n")

    async def on_stop(self) -> None:
        if self.url is not None and url_of_worker(self.url_file) == self.url:
            self.url_file.unlink(missing_ok=True)
        if self.runner is not None:
            await self.runner.cleanup()
        await self.lag.close()


def url_of_worker(url_file: Path) -> str | None:
    """The endpoint URL a running worker wrote (None: no worker with this data dir runs)."""
    try:
        return url_file.read_text().strip() or None
    except FileNotFoundError:
        return None
