"""`codeclm status`: one screen, refreshed in place: per stage rate, lag and errors; pairs so far,
LLM calls, tokens and error rate. Counters from a worker's /metrics, lag from the broker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from streams.cli import add_settings_flags, settings_from_args

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="a refreshing screen of rates, lag, errors, pairs, LLM calls and tokens")
    p.add_argument("--url", help="the worker's HTTP endpoint (default: the one in the worker data dir's http-url)")
    p.add_argument("--token", help="bearer token, if the worker wants one (default CODECLM_WORKER__HTTP_TOKEN)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one screen (two samples --interval apart) and exit")
    p.add_argument("--app-id", help="the workers' app id (default codeclm; groups are <app-id>-<stage>)")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.runtime.http import URL_FILE, url_of_worker
    from streams.settings import overlay

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # an unreachable broker is shown on screen
    settings = settings_from_args(args)
    if args.app_id:
        settings = overlay(settings, {"worker": {"app_id": args.app_id}})
    url = args.url or url_of_worker(settings.worker.data_dir / URL_FILE)
    if not url:
        print(
            f"codeclm status: no --url given and no running worker wrote {settings.worker.data_dir / URL_FILE}; "
            "pass the URL the worker logged (`HTTP endpoint on ...`)",
            file=sys.stderr,
        )
        return 2
    token = args.token or (settings.worker.http_token.get_secret_value() if settings.worker.http_token else None)
    return asyncio.run(_run(settings, url, token, args))


async def _run(settings, url: str, token: str | None, args: argparse.Namespace) -> int:
    import aiohttp
    from aiokafka.errors import KafkaError

    from streams.ops.consumer_lag import LagProbe
    from streams.ops.status_screen import fetch_metrics, render_status

    in_place = not args.once and sys.stdout.isatty()
    before = None
    probe: LagProbe | None = None
    timeout = aiohttp.ClientTimeout(total=max(2.0, args.interval))
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            while True:
                now = worker_error = lag = lag_error = None
                try:
                    now = await fetch_metrics(http, url, token)
                except (aiohttp.ClientError, TimeoutError, PermissionError) as exc:
                    worker_error = str(exc) or type(exc).__name__
                try:
                    if probe is None:
                        probe = await LagProbe(settings, coordinator_timeout=5.0).__aenter__()
                    lag = await probe.snapshot()
                except (KafkaError, OSError, TimeoutError) as exc:
                    lag_error = str(exc) or type(exc).__name__
                    if probe is not None:
                        await probe.__aexit__(None, None, None)
                        probe = None
                if args.once and before is None and now is not None:
                    before = now  # rates need a second sample
                    await asyncio.sleep(args.interval)
                    continue
                screen = render_status(url, time.time(), now, before, lag, worker_error, lag_error)
                print((CLEAR if in_place else "") + screen, flush=True)
                if args.once:
                    return 0 if worker_error is None and lag_error is None else 1
                before = now or before
                await asyncio.sleep(args.interval)
        finally:
            if probe is not None:
                await probe.__aexit__(None, None, None)
