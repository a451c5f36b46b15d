"""The token actions/checkout persists in a repository, held back from agents during a run.

With ``persist-credentials`` (its default) actions/checkout leaves the job's token where
every git command in the repository finds it, and so can any agent, since worktrees share
the repository's configuration: v4 and v5 write ``http.https://github.com/.extraheader =
AUTHORIZATION: basic <base64 of x-access-token:TOKEN>`` into ``.git/config`` (and each
submodule's); v6 and later write that entry into ``$RUNNER_TEMP/git-credentials-<uuid>.config``
and include it from ``.git/config`` with ``includeIf.gitdir:...`` entries, worktrees
included. For the run, :func:`held_back` takes the ``http.*extraheader`` entries out of those
config files and empties the credential files they include; when the run ends both are put
back as they were. orchestra-ci's own pushes pass the token themselves.

What is held is kept in memory only, never written anywhere an agent could read it. A
runner killed outright (SIGKILL) cannot put it back: later steps of the job that push
with the persisted credential then fail to authenticate. Checking out with
``persist-credentials: false`` avoids the question.
"""

import contextlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from orchestra_ci.errors import OrchestraError
from orchestra_ci.worktrees import find_repo, git_output

log = structlog.get_logger("orchestra_ci")

_EXTRAHEADER = re.compile(r"http\.(?:.*\.)?extraheader", re.I)
_INCLUDE = re.compile(r"include\.path|includeif\..*\.path", re.I)
_CHECKOUT_FILE = re.compile(r"git-credentials-[0-9a-f-]+\.config", re.I)  # as checkout names them

Entry = tuple[str, str | None]  # a config key and its value (None: a key with no "=")


# -- what to hold (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """What one config file gives up for the run."""

    keys: tuple[str, ...]  # to unset, each once
    entries: tuple[tuple[str, str], ...]  # to add back, in their order
    files: tuple[str, ...]  # checkout's credential files it includes, as written


def parse_list(output: bytes) -> list[Entry]:
    """``git config --null --list`` output: entries end with NUL, the key ends at the first
    newline."""
    entries: list[Entry] = []
    for item in output.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            key, newline, value = item.partition("\n")
            entries.append((key, value if newline else None))
    return entries


def to_hold(entries: Sequence[Entry]) -> Hold:
    headers = [(k, v) for k, v in entries if v is not None and _EXTRAHEADER.fullmatch(k)]
    files = [
        v
        for k, v in entries
        if v is not None and _INCLUDE.fullmatch(k) and _CHECKOUT_FILE.fullmatch(Path(v).name)
    ]
    return Hold(tuple(dict.fromkeys(k for k, _ in headers)), tuple(headers), tuple(files))


def quoted(value: str) -> str:
    """``value`` as a git config value in double quotes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


# -- holding and putting back --------------------------------------------------------------


def _overwrite(path: Path, data: bytes) -> None:
    """Replace the file's content in place: its owner and mode stay (the credential files
    belong to the runner's user, and the Action runs as root)."""
    with path.open("r+b") as f:
        f.write(data)
        f.truncate()


def _included(config: Path, name: str) -> Path:
    path = Path(os.path.expanduser(name))
    return path if path.is_absolute() else config.parent / path


@dataclass
class _Held:
    entries: dict[Path, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    files: dict[Path, bytes] = field(default_factory=dict)  # credential file -> its content

    def take(self, top: Path, config: Path) -> None:
        hold = to_hold(parse_list(git_output(top, "config", "--file", str(config), "-z", "-l")))
        for name in hold.files:
            path = _included(config, name)
            if path in self.files or not path.is_file():
                continue
            data = path.read_bytes()
            if b"extraheader" in data.lower():
                self.files[path] = data
                _overwrite(path, b"")
        for key in hold.keys:
            git_output(top, "config", "--file", str(config), "--unset-all", key)
            taken = tuple(entry for entry in hold.entries if entry[0] == key)
            self.entries[config] = self.entries.get(config, ()) + taken

    def put_back(self, top: Path) -> None:
        """Everything held goes back; what cannot is logged (naming its file), and the rest
        still goes back."""
        for path, data in self.files.items():
            try:
                _overwrite(path, data)
            except OSError as error:
                log.error("cannot put back a git credential file", path=str(path), error=str(error))
        for config, entries in self.entries.items():
            try:
                _add_back(top, config, entries)
            except (OrchestraError, OSError) as error:
                log.error("cannot put back git credentials", config=str(config), error=str(error))


def _add_back(top: Path, config: Path, entries: Sequence[tuple[str, str]]) -> None:
    """Each value goes in through a placeholder, so that it is never in an argv."""
    values = {}
    for key, value in entries:
        placeholder = f"orchestra-ci-held-{secrets.token_hex(12)}"
        git_output(top, "config", "--file", str(config), "--add", key, placeholder)
        values[placeholder] = value
    text = config.read_text(encoding="utf-8", errors="surrogateescape")
    for placeholder, value in values.items():
        text = text.replace(placeholder, quoted(value), 1)
    _overwrite(config, text.encode("utf-8", "surrogateescape"))


def _config_files(top: Path) -> list[Path]:
    common = Path(os.fsdecode(git_output(top, "rev-parse", "--git-common-dir")).strip())
    common = common if common.is_absolute() else top / common
    modules = sorted(p for p in (common / "modules").glob("**/config") if p.is_file())
    return [common / "config", *modules]


@contextlib.contextmanager
def held_back(root: Path) -> Iterator[None]:
    """Hold back the persisted token of the repository containing ``root`` (if any) for as
    long as the ``with`` block runs. A step that fails is logged (naming no value) and
    the run goes on without it."""
    held = _Held()
    top: Path | None = None
    try:
        top = find_repo(root)
        if top is not None:
            for config in _config_files(top):
                held.take(top, config)
    except (OrchestraError, OSError) as error:
        log.warning("cannot hold back the repository's git credentials", error=str(error))
    if held.entries or held.files:
        log.info(
            "git credentials held back from agents",
            entries=sum(len(e) for e in held.entries.values()),
            files=len(held.files),
        )
    try:
        yield
    finally:
        if top is not None:
            held.put_back(top)
