"""CPU time and memory of a process and its descendants, read from /proc (Linux).

The benchmark charges the worker only for its own process tree: the LLM doubles and the
broker run in processes of their own, so their CPU does not count against the pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # user + system seconds of the tree so far
    rss_kb: int  # resident memory of the tree now
    hwm_kb: int  # sum of each process's peak resident memory (VmHWM)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1] is ppid
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def usage(pid: int) -> Usage:
    """Usage of `pid`'s tree; reaped children's CPU is included through cutime/cstime."""
    cpu_ticks, rss, hwm = 0, 0, 0
    for p in descendants(pid):
        fields = _stat_fields(p)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the name).
        cpu_ticks += sum(int(v) for v in fields[11:15])
        rss += _status_kb(p, "VmRSS")
        hwm += _status_kb(p, "VmHWM")
    return Usage(cpu_s=cpu_ticks / TICKS, rss_kb=rss, hwm_kb=hwm)


def machine() -> dict[str, str]:
    """What BENCHMARKS.md says about the machine: cores, CPU model, memory, load."""
    model = "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    mem_kb = _meminfo_kb("MemTotal")
    load = os.getloadavg()
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def _meminfo_kb(key: str) -> int:
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0
