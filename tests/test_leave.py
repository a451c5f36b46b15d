"""orchestra_ci.leave: the entry points' exit."""

import subprocess
import sys
from pathlib import Path


def test_leaving_runs_exit_handlers_flushes_output_and_sets_the_code() -> None:
    program = (
        "import atexit, gc\n"
        "from orchestra_ci.leave import leave\n"
        "atexit.register(lambda: print(f' frozen={gc.get_freeze_count() > 0}', end=''))\n"
        "print('buffered', end='')\n"
        "leave(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "buffered frozen=True", "")


def test_the_cli_exits_with_its_command_code(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    done = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(missing), "status"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr == f"orchestra-ci: error: --root {missing}: no such directory\n"
