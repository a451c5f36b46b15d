"""Who may have an agent run on their issue: a pure decision over permissions."""

from collections.abc import Collection
from dataclasses import dataclass

TRUSTED_ROLES = frozenset({"admin", "maintain", "write"})


@dataclass(frozen=True)
class Requester:
    login: str
    role: str | None  # admin, maintain, write, triage, read, none; None when unknown


@dataclass(frozen=True)
class TrustDecision:
    trusted: bool
    reason: str


def _ok(person: Requester | None, users: Collection[str], bots: Collection[str]) -> bool:
    if person is None:
        return False
    login = person.login.lower()
    if login in {u.lower() for u in users} or login in {b.lower() for b in bots}:
        return True
    return person.role in TRUSTED_ROLES


def assess(
    author: Requester,
    labeler: Requester | None,
    allow_users: Collection[str] = (),
    allow_bots: Collection[str] = (),
) -> TrustDecision:
    """Trusted if whoever applied the label, or whoever opened the issue, has write,
    maintain or admin permission, or is on an allow-list."""
    if _ok(labeler, allow_users, allow_bots):
        assert labeler is not None
        return TrustDecision(True, f"label applied by @{labeler.login}")
    if _ok(author, allow_users, allow_bots):
        return TrustDecision(True, f"opened by @{author.login}")
    who = f"@{labeler.login}" if labeler else "an unknown user"
    return TrustDecision(
        False,
        f"the label was applied by {who} and the issue opened by @{author.login}; neither has "
        "write, maintain or admin permission on this repository or is on the allow-list",
    )
