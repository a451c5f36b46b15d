"""actions/checkout's persisted token, held back from agents for a run and put back after."""

import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestra_ci.git_credentials import held_back, parse_list, quoted, to_hold

KEY = "http.https://github.com/.extraheader"
LOCAL = "AUTHORIZATION: basic bG9jYWwtdG9rZW4tdjQ="  # checkout v4/v5: in .git/config
INCLUDED = "AUTHORIZATION: basic aW5jbHVkZWQtdG9rZW4tdjY="  # v6+: in a file it includes
SUBMODULE = "AUTHORIZATION: basic c3VibW9kdWxlLXRva2Vu"


def git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    assert proc.returncode in ok, proc.stderr
    return proc.stdout


def entries(config: Path) -> list[str]:
    return sorted(git(config.parent, "config", "--file", str(config), "-l").splitlines())


def everything_readable(*places: Path) -> bytes:
    return b"".join(p.read_bytes() for place in places for p in place.rglob("*") if p.is_file())


@pytest.fixture
def checkout(git_repo: Path, tmp_path: Path) -> Path:
    """``git_repo`` as actions/checkout leaves it with persist-credentials, both ways (v4's
    header in .git/config, v6's credential file included for the repository and its
    worktrees), plus a submodule's config with its own header."""
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir()
    credentials = runner_temp / "git-credentials-0b6e2a8e-49f2-4c1e-9d4f-6a1b2c3d4e5f.config"
    credentials.write_text(f'[http "https://github.com/"]\n\textraheader = {INCLUDED}\n')
    credentials.chmod(0o640)
    git(git_repo, "config", "--local", KEY, LOCAL)
    gitdir = git_repo / ".git"
    for pattern in (str(gitdir), f"{gitdir}/worktrees/*"):
        git(git_repo, "config", "--local", f"includeIf.gitdir:{pattern}.path", str(credentials))
    submodule = gitdir / "modules" / "lib" / "config"
    submodule.parent.mkdir(parents=True)
    submodule.write_text("[core]\n\tbare = false\n")
    git(git_repo, "config", "--file", str(submodule), KEY, SUBMODULE)
    return credentials


def test_no_token_is_readable_in_the_repository_or_its_worktrees_during_the_run(
    git_repo: Path, checkout: Path, tmp_path: Path
) -> None:
    worktree = tmp_path / "worktree"
    git(git_repo, "worktree", "add", "-q", "--detach", str(worktree))
    with held_back(git_repo):
        assert git(worktree, "config", "--get-all", KEY, ok=(1,)) == ""
        assert git(git_repo, "config", "--get-all", KEY, ok=(1,)) == ""
        readable = everything_readable(git_repo / ".git", checkout.parent, worktree)
        for header in (LOCAL, INCLUDED, SUBMODULE):
            assert header.split()[-1].encode() not in readable


def test_everything_is_put_back_as_it_was(git_repo: Path, checkout: Path) -> None:
    config, submodule = git_repo / ".git/config", git_repo / ".git/modules/lib/config"
    before = entries(config), entries(submodule), checkout.read_bytes(), checkout.stat()
    with held_back(git_repo):
        git(git_repo, "config", "--local", "user.name", "an agent")  # the config changes
    assert entries(config) == sorted([*before[0], "user.name=an agent"])
    assert entries(submodule) == before[1]
    assert checkout.read_bytes() == before[2]
    after = checkout.stat()
    assert (after.st_ino, after.st_mode, after.st_uid) == (
        before[3].st_ino,
        before[3].st_mode,
        before[3].st_uid,
    )
    assert git(git_repo, "config", "--get-all", KEY).splitlines() == [INCLUDED, LOCAL]


def test_they_are_put_back_when_the_run_fails(git_repo: Path, checkout: Path) -> None:
    with pytest.raises(RuntimeError), held_back(git_repo):
        raise RuntimeError("the run crashed")
    assert sorted(git(git_repo, "config", "--get-all", KEY).splitlines()) == [INCLUDED, LOCAL]


def test_a_repository_without_persisted_credentials_is_left_alone(git_repo: Path) -> None:
    config = git_repo / ".git/config"
    before = config.read_bytes()
    with held_back(git_repo):
        assert config.read_bytes() == before
    assert config.read_bytes() == before


def test_outside_a_repository_nothing_happens(tmp_path: Path) -> None:
    with held_back(tmp_path):
        pass


def test_what_a_config_gives_up() -> None:
    listed = parse_list(
        b"core.bare\nfalse\0"
        b"http.https://github.com/.extraheader\nAUTHORIZATION: basic a\0"
        b"http.https://github.com/.extraheader\nAUTHORIZATION: basic b\0"
        b"http.sslverify\ntrue\0"
        b"includeif.gitdir:/w/.git.path\n/t/git-credentials-0a1b-2c.config\0"
        b"include.path\n/home/me/.gitconfig-work\0"
        b"http.extraheader\0"  # a key with no value: nothing to hold
    )
    assert listed[-1] == ("http.extraheader", None)
    hold = to_hold(listed)
    assert hold.keys == ("http.https://github.com/.extraheader",)
    assert [value for _, value in hold.entries] == [
        "AUTHORIZATION: basic a",
        "AUTHORIZATION: basic b",
    ]
    assert hold.files == ("/t/git-credentials-0a1b-2c.config",)


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "tab\there", " padded ", "a;b#c"])
def test_quoted_values_read_back_the_same(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config"
    config.write_text(f"[x]\n\ty = {quoted(value)}\n")
    assert git(tmp_path, "config", "--file", str(config), "x.y") == value + "\n"


def test_what_cannot_be_put_back_is_logged_and_the_rest_still_is(
    git_repo: Path, checkout: Path
) -> None:
    with capture_logs() as logs, held_back(git_repo):
        checkout.unlink()  # gone before the run ends
    assert git(git_repo, "config", "--get-all", KEY).splitlines() == [LOCAL]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["path"] for e in errors] == [str(checkout)]
    assert not any(INCLUDED in str(e) or LOCAL in str(e) for e in logs)
