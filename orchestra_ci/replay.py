"""``orchestra-ci pull RUN``: a CI run's queue brought into this checkout, to replay it.

After a pull, ``status``, ``logs``, ``retry`` and ``run`` work on the run's tasks as they did
in CI. The artifact's ``run.json`` says which commit the run started from; a checkout at
another commit gets a warning, since the agents would then see other code.
"""

import dataclasses
from collections import Counter
from pathlib import Path

from orchestra_ci import manifest
from orchestra_ci.errors import OrchestraError, UsageError
from orchestra_ci.settings import Settings
from orchestra_ci.store import Store


@dataclasses.dataclass(frozen=True)
class Pulled:
    run_id: int | None
    artifact_id: int
    files: int
    statuses: dict[str, int]
    base_commit: str | None
    head: str | None
    skipped: tuple[str, ...]

    def lines(self) -> list[str]:
        run = f"run {self.run_id}" if self.run_id is not None else "an unknown run"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "no tasks"
        out = [f"restored {self.files} files from {run} (artifact {self.artifact_id}): {counts}"]
        out += [f"not restored: {reason}" for reason in self.skipped]
        if self.base_commit and self.head and self.head != self.base_commit:
            out.append(
                f"warning: HEAD is {self.head[:12]}, but the run started from "
                f"{self.base_commit[:12]}: git checkout {self.base_commit} to replay it exactly"
            )
        elif self.base_commit:
            out.append(f"the run started from {self.base_commit[:12]}, as this checkout is")
        return out


def pull(
    root: Path,
    settings: Settings,
    run: str | None,
    artifact_id: int | None,
    *,
    force: bool = False,
) -> Pulled:
    """Download run ``run``'s artifact (or the artifact ``artifact_id``) into ``.orchestra/``.
    A queue that already holds tasks is replaced only with ``force``."""
    from orchestra_ci import state
    from orchestra_ci.sources import connect_github

    if (run is None) == (artifact_id is None):
        raise UsageError("pull: give a run id or URL, or --artifact ID (one of them)")
    repository, run_id = state.parse_run_ref(run) if run is not None else (None, 0)
    if repository and settings.repository and repository != settings.repository:
        raise UsageError(
            f"pull: the run URL is in {repository}, but the repository is {settings.repository}"
        )
    if repository:
        settings = settings.model_copy(update={"repository": repository})
    store = Store(root)
    queued = sum(1 for _ in store.iter_records()) if store.tasks_dir.is_dir() else 0
    if queued and not force:
        raise UsageError(
            f"pull: {store.dir} already holds {queued} tasks; --force replaces the queue"
        )
    ctx = connect_github(settings)
    token = settings.token
    store.ensure()
    try:
        if artifact_id is not None:
            restored = state.pull_artifact(ctx.repo, store, artifact_id, token=token, clear=True)
        else:
            name = settings.artifact_name
            restored = state.pull_run(ctx.repo, store, run_id, name, token=token, clear=True)
    except state.StateUnavailable as exc:
        raise OrchestraError(f"pull: {exc}") from None
    data = manifest.read(store.dir) or {}
    base = data.get("baseCommit")
    return Pulled(
        run_id=restored.run_id,
        artifact_id=restored.artifact_id,
        files=restored.files,
        statuses=dict(Counter(r["status"] for r in store.iter_records())),
        base_commit=base if isinstance(base, str) else None,
        head=manifest.base_commit(root),
        skipped=restored.skipped,
    )
