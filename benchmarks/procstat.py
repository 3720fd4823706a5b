"""CPU time and memory of a running process, read from /proc: what the scale benchmark charges chainwatch with.

CPU is the sum of every thread's `schedstat` run time (nanoseconds, so a 2 ms quiet block is visible; the
`stat` tick counters are 10 ms coarse), aiosqlite's worker thread included.
"""

from __future__ import annotations

from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """Time the process's threads have spent on a CPU so far; a thread that ended takes its share with it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between the listing and the read
    return total / 1e9


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM): resident now and at the most, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]
