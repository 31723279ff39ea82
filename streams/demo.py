"""`codeclm demo`: broker, LLM, worker, seeds in, pairs out, every seed accounted for, all stopped.

Uses the local SmolLM2-135M model by default (or the LLM double with --llm-double, or your
endpoints with --strong-url/--target-url). Demo-sized pipeline settings keep a CPU-only run
within minutes; flags and CODECLM_PIPELINE__* variables override them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

from agents.pipeline import CONSERVATION_TOPICS
from schemas import AcceptedPair, Record, Seed
from streams.cli import settings_from_args, unset_endpoints_message
from streams.kafka.broker import EmbeddedBroker, cache_dir, free_port
from streams.kafka.topic_io import follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, Item, read_seeds
from streams.settings import Settings, overlay, settings_env, unset_endpoint_fields

# A 135M model on two CPU cores answers ~130 tokens/s, one request at a time.
DEMO_PIPELINE = {
    "instructions_per_metadata": 1,
    "max_iterations": 2,
    "max_tokens": 128,
    "answer_max_tokens": 96,
    "judge_max_tokens": 24,
    "parse_attempts": 2,
    # A 135M judge mostly echoes one example's scores; the paper's two order-swapped passes
    # cancel that bias, every gap is ~0 and no pair would reach the sink. One pass shows the flow.
    "judge_passes": 1,
}


def demo_settings(args: argparse.Namespace) -> tuple[Settings, dict[str, object]]:
    """The user's settings, with demo sizes for the pipeline numbers they did not set."""
    settings = settings_from_args(args)
    chosen: dict[str, object] = {
        name: value
        for name, value in DEMO_PIPELINE.items()
        if getattr(args, name, None) is None and f"CODECLM_PIPELINE__{name.upper()}" not in os.environ
    }
    if chosen:
        settings = overlay(settings, {"pipeline": chosen})
    return settings, chosen


class Children:
    """Child processes stopped in reverse order of start, politely first."""

    def __init__(self, stack: ExitStack):
        self.stack = stack

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
        log = open(log_path, "ab")  # noqa: SIM115 - closed by the exit stack
        self.stack.callback(log.close)
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.stack.callback(stop_process, name, process)
        return process


def stop_process(name: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop within {timeout:.0f}s; killing it")
        process.kill()
        process.wait()


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # aiokafka warns about what it retries (a new topic's leader not known yet): noise on the demo's screen.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    settings, chosen = demo_settings(args)
    unset = unset_endpoint_fields(settings)
    if uses_your_endpoints(settings) and unset:
        print(f"codeclm demo: {unset_endpoints_message(unset)}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the worker, the model servers and the broker are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = cache_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    seeds_path = Path(args.seeds)
    items = list(read_seeds(seeds_path))
    seeds = [s for s in items if not isinstance(s, BadLine)]
    for bad in (s for s in items if isinstance(s, BadLine)):
        print(f"{seeds_path}:{bad.line}: bad line, sent to the dead-letter topic: {bad.reason}")
    if not seeds:
        print(f"no seeds in {seeds_path}", file=sys.stderr)
        return 1

    with ExitStack() as stack:
        children = Children(stack)
        print("1/4 starting the embedded Kafka broker ...")
        broker = EmbeddedBroker(work / "broker", partitions=settings.kafka.partitions)
        state = broker.start(fresh=True)
        if not args.keep_broker:
            stack.callback(broker.stop)
        settings = overlay(settings, {"kafka": {"bootstrap_servers": state.bootstrap}})

        settings = start_llm(args, settings, children, work)
        print("3/4 starting the worker (encode, decode, contrast, filter, tailor) ...")
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        worker = children.spawn("worker", [sys.executable, "-m", "streams.cli", "worker"], env, work / "worker.log")
        print(f"    worker log: {work / 'worker.log'}")
        shown = ", ".join(f"{k}={v}" for k, v in chosen.items()) or "none"
        print(f"    demo-sized settings: {shown} (the paper's defaults otherwise; see --help)")

        print(f"4/4 feeding {len(seeds)} seeds from {seeds_path} and waiting for every one to finish ...\n")
        ledger = Ledger()
        ok = asyncio.run(feed_and_follow(settings, items, str(seeds_path), ledger, worker, args.timeout))
        print_summary(ledger, {s.id for s in seeds}, time.monotonic() - started)
        print("\nstopping the worker, the model and the broker ...")
        return 0 if ok else 1


def uses_your_endpoints(settings: Settings) -> bool:
    """Whether a strong endpoint was given (flag, environment or config file): then the demo
    starts no model of its own."""
    return settings.strong.base_url is not None


def start_llm(args: argparse.Namespace, settings: Settings, children: Children, work: Path) -> Settings:
    if uses_your_endpoints(settings):
        print("2/4 using your LLM endpoints:", settings.strong.base_url, settings.target.base_url)
        return settings
    if args.llm_double:
        port = free_port()
        print(f"2/4 starting the LLM double (a stand-in for tests and trials, not a model) on port {port} ...")
        children.spawn(
            "LLM double",
            [sys.executable, "-m", "llm.double", "--port", str(port), "--latency-ms", "100", "--jitter-ms", "50"],
            dict(os.environ),
            work / "llm-double.log",
        )
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_http(url + "/models", 30)
        return overlay(
            settings,
            {
                "strong": {"base_url": url, "model": "double-strong"},
                "target": {"base_url": url, "model": "double-target"},
            },
        )
    from llm.local import MODEL_ALIAS, LocalModelServer

    print(
        "2/4 starting the local model (SmolLM2-135M-Instruct on llama.cpp, CPU) for the strong, target and judge roles ..."
    )
    # One small model plays every role here; the point is the pipeline, not the data quality.
    # A server per role: each answers one request at a time, so two run at once on two cores,
    # and each keeps the prompt prefixes of its own role cached.
    roles = {}
    for role in ("strong", "target", "judge"):
        server = LocalModelServer(n_threads=1, log_path=work / f"llm-{role}.log", prompt_cache=role == "strong")
        url = server.start()
        children.stack.callback(server.stop)
        roles[role] = {"base_url": url, "model": MODEL_ALIAS, "max_in_flight": 1, "timeout_s": 300, "send_seed": True}
    # The same model in both roles gives the judge nothing to tell apart; a target held to
    # short answers plays the weaker model the method is meant to find gaps in.
    roles["target"]["max_tokens_cap"] = 24
    sections: dict[str, dict[str, object]] = dict(roles)
    if getattr(args, "prompts", None) is None and "CODECLM_PIPELINE__PROMPTS" not in os.environ:
        # A 135M model follows a format it has seen answered, not one it is only told.
        sections["pipeline"] = {"prompts": "small-model"}
        print("    prompt set: small-model (few-shot everywhere, for the 135M model; --prompts paper to change)")
    return overlay(settings, sections)


def wait_for_http(url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (a 401 without a key, say): it is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


async def feed_and_follow(
    settings: Settings, items: list[Item], source: str, ledger: Ledger, worker: subprocess.Popen, timeout: float
) -> bool:
    await feed_seeds(settings, items, source=source)
    seeds = [item for item in items if isinstance(item, Seed)]
    wanted = {s.id for s in seeds}
    reported: set[str] = set()
    texts = {s.id: s.text for s in seeds}

    def on_record(topic: str, record: Record) -> None:
        first_sighting = f"{topic}:{record.id}" not in ledger.seen_ids  # delivery is at-least-once
        ledger.add(topic, record)
        if isinstance(record, AcceptedPair) and first_sighting:
            print_pair(record)
        account = ledger.account(record.seed_id) if record.seed_id else None
        if account and account.seed_id in wanted and account.complete and account.seed_id not in reported:
            reported.add(account.seed_id)
            print(f"  seed {len(reported):>2}/{len(wanted)} done: {texts[account.seed_id][:60]!r}: {account.summary()}")

    def done() -> bool:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see its log")
        return reported >= wanted

    return await follow_until(settings, CONSERVATION_TOPICS, on_record, done, timeout)


def print_pair(pair: AcceptedPair) -> None:
    wrap = lambda s: textwrap.shorten(" ".join(s.split()), 150)  # noqa: E731
    print(f"  + pair {pair.id} (iteration {pair.iteration}, gap {pair.gap:+.1f}, {pair.response_source} answer kept)")
    print(f"      instruction: {wrap(pair.instruction)}")
    print(f"      response:    {wrap(pair.response)}")


def print_summary(ledger: Ledger, wanted: set[str], elapsed: float) -> None:
    accounts = [ledger.account(s) for s in sorted(wanted)]
    generated = sum(len(a.generated) for a in accounts)
    accepted = sum(len(a.accepted) for a in accounts)
    rejected = sum(len(a.rejected) for a in accounts)
    duplicates = sum(len(a.duplicates) for a in accounts)
    dead = sum(len(a.dead) for a in accounts)
    seeds_dead = sum(1 for a in accounts if a.seed_dead_reason)
    complete = sum(1 for a in accounts if a.complete)
    print(
        f"\n{complete}/{len(wanted)} seeds finished in {elapsed:.0f}s: {generated} instructions generated = "
        f"{accepted} accepted + {rejected} rejected + {duplicates} dropped as duplicates + {dead} dead-lettered; "
        f"{seeds_dead} seeds dead-lettered whole"
    )
    for account in accounts:
        if not account.complete:
            print(f"  unfinished: {account.seed_id}: {account.summary()}")
