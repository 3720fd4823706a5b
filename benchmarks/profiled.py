"""Run chainwatch's CLI under tracemalloc and cProfile, dumping both on SIGUSR1 (benchmarks only).

    python -m benchmarks.profiled <out prefix> <chainwatch cli arguments...>

tracemalloc starts before chainwatch is imported, so every allocation is seen; cProfile runs from SIGUSR2 to the
next SIGUSR2, so a profile covers one phase (a price block, the sustained run) and not the start-up. Each SIGUSR1
writes `<prefix>.mem.<n>.txt` (top allocators by line and by file); each closing SIGUSR2 writes `<prefix>.cpu.<n>.txt`.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import signal
import sys
import tracemalloc
from itertools import count
from types import FrameType

_TOP = 30


def main() -> int:
    prefix, argv = sys.argv[1], sys.argv[2:]
    tracemalloc.start(1)
    dumps, profiles = count(1), count(1)
    profiler: list[cProfile.Profile] = []

    def dump_memory(_signum: int, _frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        lines = [f"traced now {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB, "
                 f"peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB", "", "by line:"]  # fmt: skip
        lines += [str(stat) for stat in snapshot.statistics("lineno")[:_TOP]]
        lines += ["", "by file:"] + [str(stat) for stat in snapshot.statistics("filename")[:_TOP]]
        with open(f"{prefix}.mem.{next(dumps)}.txt", "w") as out:
            out.write("\n".join(lines) + "\n")

    def toggle_profile(_signum: int, _frame: FrameType | None) -> None:
        if not profiler:
            profiler.append(cProfile.Profile())
            profiler[0].enable()
            return
        running = profiler.pop()
        running.disable()
        text = io.StringIO()
        pstats.Stats(running, stream=text).sort_stats("cumulative").print_stats(60)
        pstats.Stats(running, stream=text).sort_stats("tottime").print_stats(40)
        with open(f"{prefix}.cpu.{next(profiles)}.txt", "w") as out:
            out.write(text.getvalue())

    signal.signal(signal.SIGUSR1, dump_memory)
    signal.signal(signal.SIGUSR2, toggle_profile)
    from chainwatch.cli import main as chainwatch_main

    return chainwatch_main(argv)


if __name__ == "__main__":
    sys.exit(main())
