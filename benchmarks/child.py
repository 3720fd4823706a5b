"""A process under measurement: started with its output in a file, read back as JSON lines, peak RSS from /proc.

Both systems run as processes of their own, so the peak resident set (VmHWM) is theirs alone: not Anvil's,
not the benchmark's, not the proxy's or the Bot API server's, which live in the benchmark process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_POLL_S = 0.005
_STOP_DEADLINE_S = 20.0


class ChildDied(Exception):
    pass


class Child:
    def __init__(self, process: asyncio.subprocess.Process, log_path: Path, started_at: float,
                 started_wall: float) -> None:  # fmt: skip
        self.process = process
        self.log_path = log_path
        self.started_at = started_at
        self.started_wall = started_wall
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    @classmethod
    async def start(cls, argv: Sequence[str], log_path: Path, cwd: Path) -> Child:
        with log_path.open("wb") as out:
            started_at, started_wall = time.monotonic(), time.time()
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=cwd
            )
        return cls(process, log_path, started_at, started_wall)

    async def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event (a JSON line of output, counted from the start) for which `matches` holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            self._read_new()
            for event in self.events[seen:]:
                if matches(event):
                    return event
            seen = len(self.events)
            if self.process.returncode is not None:
                raise ChildDied(f"{self.log_path.name}: exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.log_path.name}: no matching event within {timeout:g} s; see {self.log_path}")
            await asyncio.sleep(_POLL_S)

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (`/proc/<pid>/stat`, fields 14 and 15)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        """VmHWM of the live process: the most resident memory it ever had."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), _STOP_DEADLINE_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._read_new()
        assert self.process.returncode is not None
        return self.process.returncode

    def _read_new(self) -> None:
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a traceback or a library's plain line
            if isinstance(event, dict):
                self.events.append(event)
