"""How many inbox events may run at once while webhook deliveries are being acknowledged.

Webhook acknowledgements and inbox workers share one event loop, one interpreter lock and one writer thread. Workers
with a backlog are throughput work: they take all the CPU they are given, and an acknowledgement then waits behind
their callbacks and their transactions. Meta's deliveries are what must be answered quickly (the durable inbox
commit is all they wait for), so the workers give way. Each acknowledgement reports how long its commit took, from
the handler's side (the wait for the writer thread and for the event loop to resume it). One over the target, while
more than one event runs, cuts the number of events the pool may run by a factor, at most once per COOLDOWN_SECONDS
so one burst counts once; the allowance grows back steadily with time. The target is never below BASELINE_FACTOR x
the fastest commit of the last second or so: on a disk whose fsync alone takes longer than the target, what workers
add is still told apart from what the disk costs anyway. Additive increase, multiplicative decrease, as TCP does
with its window. At least one event always runs, so a backlog never stalls; without webhook traffic nothing is cut
and the pool runs at its full size.

On PostgreSQL the acknowledging process is often another one (`serve --role web`), on the same machine's CPUs:
the database handle passes on what other processes report of their commits (core/storage/postgres_doorbell.py,
CommitWaitReports: the fastest and the slowest of each 20 ms), and the allowance judges them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A cut multiplies the allowance by this.
DECREASE = 0.7
# Late acknowledgements closer together than this are one congestion event: one cut.
COOLDOWN_SECONDS = 0.01
# Events given back per second after a cut: from 1 to 8 in 0.35 s once acknowledgements are on time again.
RECOVERY_PER_SECOND = 20.0
# The effective target: at least this many times the fastest recent commit (what an undisturbed commit costs).
BASELINE_FACTOR = 2.0
BASELINE_WINDOW_SECONDS = 1.0


@dataclass(slots=True)
class WorkerAllowance:
    ceiling: int
    target_ms: float  # an acknowledgement's commit slower than this means the workers are in its way
    _limit: float = field(init=False)
    _since: float = field(init=False, default=0.0)  # when _limit was set (monotonic seconds)
    _last_cut: float = field(init=False, default=float("-inf"))
    # The fastest commit in this window and in the one before: a rolling minimum over one to two windows.
    _window_start: float = field(init=False, default=float("-inf"))
    _window_min: float = field(init=False, default=float("inf"))
    _previous_min: float = field(init=False, default=float("inf"))

    def __post_init__(self) -> None:
        self._limit = float(self.ceiling)

    def allowed(self, now: float) -> int:
        """Events that may run at `now`: between 1 and the ceiling."""
        return int(self._current(now))

    def acknowledged(self, commit_ms: float, now: float, *, running: int) -> bool:
        """An acknowledgement's commit took `commit_ms` while `running` events ran; True if that cut the allowance.
        With one event running or none, fewer cannot run: the delay is not the workers' to give back."""
        self._track_fastest(commit_ms, now)
        target = max(self.target_ms, BASELINE_FACTOR * min(self._window_min, self._previous_min))
        if running <= 1 or commit_ms <= target or now - self._last_cut < COOLDOWN_SECONDS:
            return False
        self._limit = max(1.0, self._current(now) * DECREASE)
        self._since = self._last_cut = now
        return True

    def _track_fastest(self, commit_ms: float, now: float) -> None:
        if now - self._window_start >= BASELINE_WINDOW_SECONDS:
            recent = now - self._window_start < 2 * BASELINE_WINDOW_SECONDS
            self._previous_min = self._window_min if recent else float("inf")
            self._window_start, self._window_min = now, float("inf")
        self._window_min = min(self._window_min, commit_ms)

    def _current(self, now: float) -> float:
        return min(float(self.ceiling), self._limit + RECOVERY_PER_SECOND * max(0.0, now - self._since))
