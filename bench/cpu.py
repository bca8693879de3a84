"""Where the CPU went during a measured window: seconds per process (grouped by role) and for the whole machine,
read from /proc (Linux), so that a multi-process figure says what it cost and what else ran meanwhile.

    meter = CpuMeter(cores=os.cpu_count())
    await meter.start(lambda: {"web": [web_pid], "postgres": backend_pids})   # any async or plain callable
    ...
    use = await meter.stop()
    use.seconds["web"], use.others, use.busy_cores

On a 2-core machine the load generator, the fakes, PostgreSQL and the gateway processes share the CPUs with
whatever else runs there. `others` is the machine's busy time that none of the listed processes account for: the
benchmark's own orchestration, PostgreSQL's background processes (WAL writer, checkpointer), and other jobs on the
machine. A process that exits inside the window loses its share (a pooled connection's backend normally lives
through it); one that starts inside it counts from zero.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Groups = Mapping[str, Sequence[int]]
GroupsOf = Callable[[], Groups | Awaitable[Groups]]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads), or None when it is gone or not on Linux."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count from the last ')'. Fields 14 and 15 are utime and stime.
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy() -> float | None:
    """CPU seconds the machine has spent busy since boot, all cores (None where /proc/stat is not there)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass(slots=True)
class CpuUse:
    """CPU seconds over one window: by group, and the whole machine's."""

    wall: float
    cores: int
    seconds: dict[str, float] = field(default_factory=dict)
    machine: float = float("nan")  # busy CPU seconds, all cores, everything on the machine

    @property
    def accounted(self) -> float:
        return sum(self.seconds.values())

    @property
    def others(self) -> float:
        return self.machine - self.accounted

    @property
    def busy_cores(self) -> float:
        return self.machine / self.wall if self.wall > 0 else float("nan")

    def add(self, other: CpuUse) -> CpuUse:
        """Two windows as one (rounds of a phase pooled)."""
        names = dict.fromkeys([*self.seconds, *other.seconds])
        return CpuUse(
            self.wall + other.wall,
            self.cores,
            {n: self.seconds.get(n, 0.0) + other.seconds.get(n, 0.0) for n in names},
            self.machine + other.machine,
        )


class CpuMeter:
    """One measured window: `start(groups_of)` snapshots every listed process and the machine, `stop()` returns
    the differences. `groups_of` is called at both ends, so processes that start inside the window are found."""

    def __init__(self, cores: int | None = None) -> None:
        self._cores = cores or os.cpu_count() or 1
        self._groups_of: GroupsOf | None = None
        self._start: dict[int, float] = {}
        self._machine = 0.0
        self._wall = 0.0

    async def start(self, groups_of: GroupsOf) -> None:
        self._groups_of = groups_of
        groups = await _call(groups_of)
        self._start = {pid: cpu for pid in _pids(groups) if (cpu := process_cpu(pid)) is not None}
        self._machine = machine_busy() or float("nan")
        self._wall = time.perf_counter()

    async def stop(self) -> CpuUse:
        assert self._groups_of is not None, "start() first"
        wall = time.perf_counter() - self._wall
        machine = (machine_busy() or float("nan")) - self._machine
        groups = await _call(self._groups_of)
        use = CpuUse(wall, self._cores, machine=machine)
        for name, pids in groups.items():
            total = 0.0
            for pid in dict.fromkeys(pids):
                now = process_cpu(pid)
                if now is not None:
                    total += now - self._start.get(pid, 0.0)
            use.seconds[name] = use.seconds.get(name, 0.0) + total
        return use


async def _call(groups_of: GroupsOf) -> Groups:
    groups = groups_of()
    return await groups if inspect.isawaitable(groups) else groups


def _pids(groups: Groups) -> list[int]:
    return [pid for pids in groups.values() for pid in pids]
