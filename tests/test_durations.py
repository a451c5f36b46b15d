"""Durations as users write them in tasks files, agent configs and CLI flags."""

import datetime
import math

import pytest

from orchestra_ci.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("0.5s", 0.5),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2h15m10s", 8110.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("  45s  ", 45.0),
        ("15M", 900.0),
        ("1.5", 1.5),
    ],
)
def test_parses_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), (0, 0.0), (0.25, 0.25), (3.0, 3.0)])
def test_bare_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "s",
        "10x",
        "10 parsecs",
        "m15",
        "1h30",
        "1h-30m",
        ".5s",
        "5s!",
        "ten minutes",
        "0x10",
        "1,5s",
    ],
)
def test_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_error_names_the_input() -> None:
    with pytest.raises(ValueError, match="'10 parsecs'"):
        parse_duration("10 parsecs")


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-5s", "-1h30m"])
def test_rejects_negative(value: str | float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "infinity", "-inf"]
)
def test_rejects_nan_and_infinity(value: str | float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_rejects_digits_that_overflow_to_infinity() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("9" * 400 + "h")


@pytest.mark.parametrize("value", [True, False])
def test_rejects_bools(value: bool) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    [None, [1], {"s": 1}, (90,), datetime.date(2024, 1, 1), b"90s"],
)
def test_rejects_other_types_with_value_error(value: object) -> None:
    # It is used as a pydantic validator: anything else than ValueError would escape as a crash.
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_rejects_integer_too_large_for_a_float_with_value_error() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(10**400)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (0.44, "0.4s"),
        (9.94, "9.9s"),
        (12, "12s"),
        (12.4, "12s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3720, "1h02m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["12s", "3m05s", "1h02m", "59m59s"])
def test_format_round_trips_through_parse(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
