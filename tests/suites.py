"""`make test`'s runner: the whole suite on SQLite and, when PostgreSQL answers, on PostgreSQL, side by side.

    python -m tests.suites [pytest arguments]

The runs go at once, each backend's in two pytest processes (halves of the test files): the tests mostly wait (on
the database, subprocesses, timers), so four processes keep the machine's two cores busy. Each run's output goes
to a log file; once both are done, each is printed whole, one after the other, with which backend it was, and the
exit status is the worse of the two. PostgreSQL is looked for at TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres); with REQUIRE_POSTGRES=1 (CI) an unreachable server is a failure,
otherwise the suite runs on SQLite only and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.database import POSTGRES_SERVER, postgres_available


def main(args: list[str]) -> int:
    backends = ["sqlite"]
    if postgres_available():
        backends.append("postgresql")
    elif os.environ.get("REQUIRE_POSTGRES"):
        print(f"PostgreSQL does not answer at {POSTGRES_SERVER} and REQUIRE_POSTGRES is set", file=sys.stderr)
        return 1
    else:
        print(f"== PostgreSQL does not answer at {POSTGRES_SERVER}: the suite runs on SQLite only ==", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gateway-suites-") as tmp:
        runs = {}
        for name, backend, files in _runs(backends, args):
            log = Path(tmp) / f"{name}.log"
            with log.open("wb") as out:
                runs[name] = (
                    log,
                    subprocess.Popen(  # noqa: S603 (this interpreter running pytest, with the caller's arguments)
                        [sys.executable, "-m", "pytest", *args, *files],
                        env={**os.environ, "TEST_DATABASE": backend},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ),
                )
        print(f"== running the suite on {' and '.join(backends)} ==", flush=True)
        codes = {backend: proc.wait() for backend, (_, proc) in runs.items()}
        for backend, (log, _) in runs.items():
            print(f"\n== the suite on {backend}: exit status {codes[backend]} ==", flush=True)
            sys.stdout.write(log.read_text(errors="replace"))
    verdict = ", ".join(f"{b} {'passed' if c == 0 else 'FAILED'}" for b, c in codes.items())
    print(f"\n== {verdict} ({time.monotonic() - started:.0f} s) ==", flush=True)
    return 1 if any(codes.values()) else 0  # a run killed by a signal has a negative status


# Seconds each test file took on PostgreSQL (`python -m pytest --durations=0`, summed per file), the weights the
# halves are balanced by; a file not listed weighs its size at the listed files' seconds per byte.
TIMES = Path(__file__).with_name("file_times.json")


def _runs(backends: list[str], args: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, backend, test files) of each pytest process. Each backend's run is split in two halves of about equal
    time that run side by side (the tests wait on the database, on subprocesses and on timers much of the time, so
    four processes keep the two cores busier than two or three did); a run given its own paths is not split."""
    if any(not arg.startswith("-") for arg in args):
        return [(backend, backend, []) for backend in backends]
    files = sorted(Path("tests").rglob("test_*.py"))
    known: dict[str, float] = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    listed = [f for f in files if str(f) in known]
    per_byte = sum(known[str(f)] for f in listed) / max(1, sum(f.stat().st_size for f in listed))

    def weight(path: Path) -> float:
        return known.get(str(path), path.stat().st_size * per_byte)

    halves: tuple[list[str], list[str]] = ([], [])
    weights = [0.0, 0.0]
    for path in sorted(files, key=lambda p: (-weight(p), str(p))):  # heaviest first, each to the lighter half
        lighter = 0 if weights[0] <= weights[1] else 1
        halves[lighter].append(str(path))
        weights[lighter] += weight(path)
    return [(f"{backend}-{n + 1}", backend, sorted(half)) for backend in backends for n, half in enumerate(halves)]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
