"""`codeclm broker start|stop|status`: the embedded Kafka broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="start, stop or ask about the embedded Kafka broker")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--data-dir", help="where the broker keeps its data (default ~/.cache/codeclm/broker)")
    p.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    p.add_argument("--partitions", type=int, help="default partitions of auto-created topics")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.kafka.broker import BrokerError, EmbeddedBroker

    # Progress goes to standard error: `eval "$(codeclm broker start)"` runs what is on standard
    # output, which is the export line alone.
    broker = EmbeddedBroker(
        Path(args.data_dir) if args.data_dir else None, partitions=args.partitions or 4, log=to_stderr
    )
    try:
        if args.action == "start":
            state = broker.start(fresh=args.fresh)
            print(f"export CODECLM_KAFKA__BOOTSTRAP_SERVERS={state.bootstrap}")
        elif args.action == "stop":
            print("stopped" if broker.stop() else "not running")
        else:
            pid = broker.running_pid()
            running = broker.read_state()
            if pid and running:
                print(f"running (pid {pid}) on {running.bootstrap}, data in {broker.data_dir}")
            else:
                print(f"not running (data in {broker.data_dir})")
                return 3
    except BrokerError as exc:
        print(f"codeclm broker: {exc}", file=sys.stderr)
        return 1
    return 0


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
