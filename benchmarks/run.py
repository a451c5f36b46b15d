"""orchestra-ci benchmarks: each case runs side by side in one session, medians reported.

    python benchmarks/run.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/run.py --smoke    # a few seconds, for CI; writes nothing

Each case builds its own queue in a temporary directory and calls the CLI the way a user
does: the interpreter directly, ``python -m orchestra_ci``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PY = sys.executable
HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    case: str
    measure: str
    median: float
    unit: str
    runs: int
    note: str = ""


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> float:
    """Wall time of one CLI call (seconds)."""
    started = time.perf_counter()
    subprocess.run(
        [PY, "-m", "orchestra_ci", "--root", str(root), *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - started


def queue_of(root: Path, count: int, agent: str = "demo", prompt: str = "benchmark") -> None:
    (root / ".orchestra").mkdir(parents=True, exist_ok=True)
    lines = [f"defaults: {{agent: {agent}, max_retries: 0}}", "tasks:"]
    lines += [f"  - {{id: t{n:05d}, prompt: '{prompt} {n}'}}" for n in range(count)]
    (root / ".orchestra/tasks.yml").write_text("\n".join(lines) + "\n")


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeat))


def case_demo_batch(tasks: int, parallel: int, repeat: int) -> Row:
    env = {**os.environ, "ORCHESTRA_DEMO_DELAY": "0.2", "CI": "true"}

    def once() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            queue_of(root, tasks)
            return cli(root, "run", "--parallel", str(parallel), env=env)

    wall = median_of(repeat, once)
    ideal = tasks * 0.2 / parallel
    return Row(
        f"{tasks} demo-agent tasks (0.2 s each), --parallel {parallel}",
        "wall time",
        wall,
        "s",
        repeat,
        f"ideal {ideal:.1f} s, ratio {wall / ideal:.2f}",
    )


def case_status_json(tasks: int, repeat: int) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queue_of(root, tasks)
        cli(root, "load")
        out = subprocess.run(
            [PY, "-m", "orchestra_ci", "--root", str(root), "status", "--json"],
            check=True,
            capture_output=True,
        )
        assert len(json.loads(out.stdout)) == tasks
        wall = median_of(repeat, lambda: cli(root, "status", "--json"))
    return Row(f"status --json, {tasks} queued tasks", "wall time", wall * 1000, "ms", repeat)


def case_start(repeat: int) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wall = median_of(repeat, lambda: cli(root, "start", "demo", "hello"))
    return Row("start (queue one task)", "wall time", wall * 1000, "ms", repeat)


def case_version(repeat: int) -> Row:
    def once() -> float:
        started = time.perf_counter()
        subprocess.run(
            [PY, "-m", "orchestra_ci", "--version"], check=True, stdout=subprocess.DEVNULL
        )
        return time.perf_counter() - started

    return Row("--version", "wall time", median_of(repeat, once) * 1000, "ms", repeat)


def render(rows: list[Row]) -> str:
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d')}",
        "",
        "| case | measure | median | runs | note |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r.median:.2f} {r.unit}" if r.unit == "s" else f"{r.median:.0f} {r.unit}"
        lines.append(f"| {r.case} | {r.measure} | {value} | {r.runs} | {r.note} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run, no file")
    args = parser.parse_args()
    if args.smoke:
        rows = [case_demo_batch(8, 4, 1), case_status_json(50, 1), case_start(1), case_version(1)]
    else:
        rows = [
            case_demo_batch(200, 8, 3),
            case_status_json(2000, 11),
            case_start(11),
            case_version(11),
        ]
    table = render(rows)
    print(table)
    if not args.smoke:
        (HERE / "RESULTS.md").write_text("# Benchmark results\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
