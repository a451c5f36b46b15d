"""orchestra_ci.trust: who may have an agent run on their issue."""

import itertools

import pytest

from orchestra_ci.trust import Requester, assess

TRUSTED = ["admin", "maintain", "write"]
UNTRUSTED: list[str | None] = ["triage", "read", "none", None]
ROLES: list[str | None] = [*TRUSTED, *UNTRUSTED]


@pytest.mark.parametrize(("labeler_role", "author_role"), list(itertools.product(ROLES, ROLES)))
def test_truth_table(labeler_role: str | None, author_role: str | None) -> None:
    decision = assess(Requester("alice", author_role), Requester("bob", labeler_role))
    assert decision.trusted == (labeler_role in TRUSTED or author_role in TRUSTED)


@pytest.mark.parametrize("role", TRUSTED)
def test_a_trusted_labeler_is_named_in_the_reason(role: str) -> None:
    decision = assess(Requester("alice", "read"), Requester("bob", role))
    assert decision.trusted
    assert "@bob" in decision.reason and "label" in decision.reason


@pytest.mark.parametrize("role", TRUSTED)
def test_a_trusted_author_is_named_when_the_labeler_is_not(role: str) -> None:
    decision = assess(Requester("alice", role), Requester("bob", "triage"))
    assert decision.trusted
    assert "@alice" in decision.reason and "@bob" not in decision.reason


@pytest.mark.parametrize(("labeler_role", "author_role"), [("triage", "read"), (None, "none")])
def test_an_untrusted_reason_names_both_people(
    labeler_role: str | None, author_role: str | None
) -> None:
    decision = assess(Requester("alice", author_role), Requester("mallory", labeler_role))
    assert not decision.trusted
    assert "@mallory" in decision.reason and "@alice" in decision.reason
    assert "write" in decision.reason


def test_unknown_labeler_with_a_trusted_author() -> None:
    decision = assess(Requester("alice", "maintain"), None)
    assert decision.trusted
    assert "@alice" in decision.reason


@pytest.mark.parametrize("author_role", UNTRUSTED)
def test_unknown_labeler_with_an_untrusted_author(author_role: str | None) -> None:
    decision = assess(Requester("alice", author_role), None)
    assert not decision.trusted
    assert "unknown user" in decision.reason and "@alice" in decision.reason


def test_allowed_user_as_labeler_is_trusted_case_insensitively() -> None:
    decision = assess(Requester("mallory", None), Requester("Carol", "read"), allow_users=["carol"])
    assert decision.trusted
    assert "@Carol" in decision.reason


def test_allowed_user_as_author_is_trusted_case_insensitively() -> None:
    decision = assess(Requester("dave", "none"), None, allow_users=["DAVE"])
    assert decision.trusted
    assert "@dave" in decision.reason


def test_allowed_bot_is_trusted_case_insensitively() -> None:
    decision = assess(
        Requester("renovate[bot]", None),
        Requester("renovate[bot]", None),
        allow_bots=["Renovate[bot]"],
    )
    assert decision.trusted


def test_allow_lists_match_whole_logins_only() -> None:
    author, labeler = Requester("alice2", "read"), Requester("renovate", None)
    decision = assess(author, labeler, allow_users=["alice"], allow_bots=["renovate[bot]"])
    assert not decision.trusted


def test_allow_list_for_someone_else_does_not_help() -> None:
    decision = assess(
        Requester("alice", "read"),
        Requester("bob", "triage"),
        allow_users=["carol"],
        allow_bots=["dependabot[bot]"],
    )
    assert not decision.trusted
