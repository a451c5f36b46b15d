"""Masking secrets found in the environment."""

import pytest

from orchestra_ci.redact import MASK, Redactor, secret_values


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_APIKEY",
        "AWS_SECRET_ACCESS_KEY",
        "CLIENT_SECRET",
        "DB_PASSWORD",
        "MYSQL_PASSWD",
        "SSH_PRIVATE_KEY_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SIGNING_KEY",
        "github_token",
    ],
)
def test_secret_like_names_are_picked(name: str) -> None:
    assert secret_values({name: "s3cr3t-value"}) == ["s3cr3t-value"]


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "USER", "KEYBOARD_LAYOUT", "MONKEY", "CI", "GITHUB_REPOSITORY"]
)
def test_other_names_are_ignored(name: str) -> None:
    assert secret_values({name: "some-long-value"}) == []


def test_short_values_are_ignored() -> None:
    env = {"A_TOKEN": "", "B_TOKEN": "1", "C_TOKEN": "12345", "D_TOKEN": "123456"}
    assert secret_values(env) == ["123456"]


def test_secret_values_picks_only_matching_entries() -> None:
    env = {"GITHUB_TOKEN": "ghp_abcdef123", "PATH": "/usr/bin:/bin", "API_KEY": "sk-999999"}
    assert sorted(secret_values(env)) == ["ghp_abcdef123", "sk-999999"]


def test_secret_values_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_TEST_SECRET", "from-the-environment")
    assert "from-the-environment" in secret_values()


def test_redactor_masks_every_occurrence() -> None:
    redact = Redactor(["hunter22"])
    assert redact("pw=hunter22; again hunter22hunter22.") == f"pw={MASK}; again {MASK}{MASK}."


def test_redactor_masks_several_secrets() -> None:
    redact = Redactor(["alpha-secret", "beta-secret"])
    assert redact("a=alpha-secret b=beta-secret") == f"a={MASK} b={MASK}"


def test_redactor_longest_first() -> None:
    # The short secret is a prefix of the long one: masking it first would leak the tail.
    redact = Redactor(["abcdef", "abcdefXYZ123"])
    assert redact("token abcdefXYZ123 and abcdef") == f"token {MASK} and {MASK}"
    redact = Redactor(["abcdefXYZ123", "abcdef"])
    assert redact("abcdefXYZ123") == MASK


def test_redactor_added_later_still_longest_first() -> None:
    redact = Redactor(["abcdef"])
    redact.add("abcdefXYZ123")
    assert redact("abcdefXYZ123") == MASK


def test_redactor_treats_secrets_literally() -> None:
    redact = Redactor(["a.b*c+d(e)[f]"])
    assert redact("x a.b*c+d(e)[f] y") == f"x {MASK} y"
    assert redact("x aXbbbcd(e)f y") == "x aXbbbcd(e)f y"


def test_redactor_ignores_short_secrets() -> None:
    redact = Redactor(["", "abc", "12345"])
    assert redact("abc 12345") == "abc 12345"


def test_empty_redactor_returns_text_unchanged() -> None:
    text = "nothing to hide ***"
    assert Redactor()(text) == text


def test_redactor_leaves_text_without_secrets_alone() -> None:
    redact = Redactor(["s3cr3t-value"])
    assert redact("s3cr3t-valu and 3cr3t-value") == "s3cr3t-valu and 3cr3t-value"
