"""The bundled demo batch (examples/demo) end to end with the demo agent, in a git repository."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def test_the_changelog_task_builds_on_the_lint_tasks_change(git_repo: Path) -> None:
    shutil.copytree(DEMO, git_repo, dirs_exist_ok=True)
    for args in (["add", "-A"], ["commit", "-q", "-m", "demo"]):
        subprocess.run(
            [
                "git",
                "-C",
                str(git_repo),
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@e.invalid",
                *args,
            ],
            check=True,
            capture_output=True,
        )
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(git_repo), "run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(ORCHESTRA_DEMO_DELAY="0"),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    patch = (git_repo / ".orchestra/patches/changelog.patch").read_text()
    assert "+Builds on the work already here:" in patch
    assert "+- orchestra-demo/lint.md" in patch
    assert "b/orchestra-demo/lint.md" not in patch  # lint's change stays in lint's patch
    independent = (git_repo / ".orchestra/patches/docs-api.patch").read_text()
    assert "Builds on" not in independent
