"""Kafka's own command-line tools (from the jars streams.kafka.broker caches), as independent witnesses
of what codeclm reports: the consumer-groups tool for lag, the console consumer for the sink."""

from __future__ import annotations

import shutil
import subprocess

from streams.kafka.broker import ensure_kafka_jars

CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


def run_kafka_tool(main: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    java = shutil.which("java")
    assert java, "java is needed for Kafka's tools"
    cmd = [java, "-Xmx256m", "-cp", f"{ensure_kafka_jars()}/*", main, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def parse_describe(output: str) -> dict[tuple[str, str, int], tuple[int | None, int, int | None]]:
    """ConsumerGroupCommand --describe's tables as {(group, topic, partition): (current, log-end, lag)};
    "-" (nothing committed) becomes None."""
    rows: dict[tuple[str, str, int], tuple[int | None, int, int | None]] = {}
    columns: list[str] | None = None
    for line in output.splitlines():
        cells = line.split()
        if not cells:
            continue
        if cells[0] == "GROUP":
            columns = cells
            continue
        if columns is None or len(cells) < len(columns):
            continue
        row = dict(zip(columns, cells, strict=False))

        def number(cell: str) -> int | None:
            return None if cell == "-" else int(cell)

        key = (row["GROUP"], row["TOPIC"], int(row["PARTITION"]))
        rows[key] = (number(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]), number(row["LAG"]))
    return rows


def describe_groups(
    bootstrap: str, groups: list[str]
) -> dict[tuple[str, str, int], tuple[int | None, int, int | None]]:
    args = ["--bootstrap-server", bootstrap, "--describe"]
    for group in groups:
        args += ["--group", group]
    result = run_kafka_tool(CONSUMER_GROUPS, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return parse_describe(result.stdout)
