"""orchestra_ci.workflow: the Actions runner's stdout commands and file commands."""

import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra_ci import workflow
from orchestra_ci.workflow import (
    SUMMARY_LIMIT,
    command,
    escape_data,
    escape_property,
    fit_summary,
    heredoc,
    mask_commands,
    print_log_group,
    write_outputs,
    write_summary,
)

NOTE = "_Summary truncated to fit GitHub's 1 MiB limit; see results.json._"


# --- helpers that read things back the way the runner does ----------------------------


def unescape_data(value: str) -> str:
    """The runner's unescaping of a command's message."""
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(value: str) -> str:
    """The runner's unescaping of a command property."""
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        value = value.replace(escaped, raw)
    return value


def parse_command(line: str) -> tuple[str, dict[str, str], str] | None:
    """``::name k=v,k=v::message`` -> (name, properties, message), like the runner."""
    match = re.fullmatch(r"::([^ :]+)(?: ([^:]*))?::(.*)", line)
    if match is None:
        return None
    name, props, message = match.groups()
    properties = {}
    for pair in (props or "").split(","):
        if pair:
            key, _, value = pair.partition("=")
            properties[key] = unescape_property(value)
    return name, properties, unescape_data(message)


def run_commands(log: str) -> list[tuple[str, str]]:
    """The commands a runner would act on in ``log``, honouring ``::stop-commands::``."""
    executed: list[tuple[str, str]] = []
    stop_token: str | None = None
    for line in log.split("\n"):
        if stop_token is not None:
            if line == f"::{stop_token}::":
                executed.append(("resume", stop_token))
                stop_token = None
            continue
        parsed = parse_command(line)
        if parsed is None:
            continue
        name, _, message = parsed
        executed.append((name, message))
        if name == "stop-commands":
            stop_token = message
    return executed


def parse_file_commands(text: str) -> list[tuple[str, str]]:
    """``$GITHUB_OUTPUT`` parsed like the runner (Linux): ``NAME=VALUE`` or ``NAME<<DELIM``
    followed by lines up to one equal to DELIM; the value excludes the final newline."""
    entries: list[tuple[str, str]] = []
    index = 0

    def read_line() -> str | None:
        nonlocal index
        if index >= len(text):
            return None
        end = text.find("\n", index)
        if end < 0:
            line, index = text[index:], len(text)
        else:
            line, index = text[index:end], end + 1
        return line

    line = read_line()
    while line is not None:
        if line:
            equals, heredoc_at = line.find("="), line.find("<<")
            if equals >= 0 and (heredoc_at < 0 or equals < heredoc_at):
                name, _, value = line.partition("=")
                entries.append((name, value))
            elif heredoc_at >= 0:
                name, _, delimiter = line.partition("<<")
                assert name and delimiter, f"invalid heredoc line {line!r}"
                start = end_value = index
                inner = read_line()
                while inner != delimiter:
                    assert inner is not None, f"matching delimiter not found: {delimiter!r}"
                    end_value = index - 1
                    inner = read_line()
                entries.append((name, text[start:end_value] if end_value > start else ""))
            else:
                raise AssertionError(f"invalid line {line!r}")
        line = read_line()
    return entries


def open_fence(markdown: str) -> bool:
    """True if a fenced code block is still open at the end of ``markdown``."""
    fence: str | None = None
    for line in markdown.split("\n"):
        match = re.fullmatch(r" {0,3}(`{3,}|~{3,})(.*)", line)
        if match is None:
            continue
        if fence is None:
            fence = match[1]
        elif match[1][0] == fence[0] and len(match[1]) >= len(fence) and not match[2].strip():
            fence = None
    return fence is not None


@pytest.fixture
def output_file(tmp_path: Path) -> Path:
    return tmp_path / "github_output"


# --- escaping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text", "plain text"),
        ("100%", "100%25"),
        ("a\nb", "a%0Ab"),
        ("a\r\nb", "a%0D%0Ab"),
        ("%0A", "%250A"),
        ("key: a, b", "key: a, b"),
    ],
)
def test_escape_data(raw: str, escaped: str) -> None:
    assert escape_data(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a:b", "a%3Ab"),
        ("a,b", "a%2Cb"),
        ("50%: x,\ny", "50%25%3A x%2C%0Ay"),
        ("%3A", "%253A"),
    ],
)
def test_escape_property(raw: str, escaped: str) -> None:
    assert escape_property(raw) == escaped


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("%:,\r\n0ADC2-5a ")) | st.text())
def test_escaping_round_trips_through_the_runners_unescaping(value: str) -> None:
    data, prop = escape_data(value), escape_property(value)
    assert "\n" not in data and "\r" not in data
    assert not set(prop) & set("\r\n:,")
    assert unescape_data(data) == value
    assert unescape_property(prop) == value


# --- command --------------------------------------------------------------------------


def test_command_escapes_properties_and_message() -> None:
    assert (
        command("error", "line1\nline2", title="a:b,c") == "::error title=a%3Ab%2Cc::line1%0Aline2"
    )


def test_command_without_properties() -> None:
    assert command("group", "Task: build") == "::group::Task: build"
    assert command("endgroup") == "::endgroup::"


def test_command_joins_properties_and_skips_missing_ones() -> None:
    line = command("warning", "careful", file="src/a.py", line="3", title=None)
    assert line == "::warning file=src/a.py,line=3::careful"


def test_command_round_trips_hostile_values() -> None:
    title, message = "x::y, z=1\n::error::no", "50% done\r\n::add-mask::nope"
    line = command("notice", message, title=title)
    assert "\n" not in line and "\r" not in line
    assert parse_command(line) == ("notice", {"title": title}, message)


# --- mask_commands --------------------------------------------------------------------


def test_mask_commands_masks_each_value() -> None:
    assert mask_commands(["ghp_abcdef123", "hunter2hunter2"]) == [
        "::add-mask::ghp_abcdef123",
        "::add-mask::hunter2hunter2",
    ]


def test_mask_commands_masks_a_multiline_secret_whole_and_line_by_line() -> None:
    key = "-----BEGIN KEY-----\r\nMIIEabc\n\n   \nxyz==\n-----END KEY-----"
    masked = [parse_command(line) for line in mask_commands([key])]
    assert all(m is not None and m[0] == "add-mask" for m in masked)
    values = [m[2] for m in masked if m is not None]
    assert values == [key, "-----BEGIN KEY-----", "MIIEabc", "xyz==", "-----END KEY-----"]


def test_mask_commands_skips_blank_values() -> None:
    assert mask_commands(["", "   ", "real-secret"]) == ["::add-mask::real-secret"]


def test_mask_commands_escapes_the_value() -> None:
    assert mask_commands(["50%off"]) == ["::add-mask::50%25off"]


# --- heredoc --------------------------------------------------------------------------


def test_heredoc_format() -> None:
    text = heredoc("result", "a\nb")
    header, rest = text.split("\n", 1)
    name, delimiter = header.split("<<")
    assert name == "result"
    assert re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", delimiter)
    assert rest == f"a\nb\n{delimiter}\n"


def test_heredoc_delimiter_is_random_per_call() -> None:
    assert heredoc("x", "v") != heredoc("x", "v")


def test_heredoc_draws_again_when_the_value_contains_the_delimiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: Iterator[str] = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(workflow.secrets, "token_hex", lambda _n=None: next(draws))
    value = "start\nghadelimiter_aaaa\nend"
    assert heredoc("out", value) == f"out<<ghadelimiter_bbbb\n{value}\nghadelimiter_bbbb\n"


values = st.lists(
    st.sampled_from(["\n", "\r\n", "\r", "<<", "=", "EOF", "ghadelimiter_", "::", "%"])
    | st.text(max_size=8)
).map("".join)


@settings(max_examples=300, deadline=None)
@given(values)
def test_heredoc_delimiter_never_occurs_in_the_value(value: str) -> None:
    text = heredoc("out", value)
    delimiter = text.split("\n", 1)[0].split("<<", 1)[1]
    assert delimiter not in value
    assert parse_file_commands(text) == [("out", value)]


# --- write_outputs --------------------------------------------------------------------


def test_write_outputs_appends_parseable_entries(output_file: Path) -> None:
    output_file.write_text("earlier=1\n")
    outputs = {"total": "3", "failed": "", "results": "/w/.orchestra/results.json"}
    assert write_outputs(outputs, {"GITHUB_OUTPUT": str(output_file)})
    assert write_outputs({"total": "4"}, {"GITHUB_OUTPUT": str(output_file)})
    assert parse_file_commands(output_file.read_bytes().decode()) == [
        ("earlier", "1"),
        ("total", "3"),
        ("failed", ""),
        ("results", "/w/.orchestra/results.json"),
        ("total", "4"),
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,12}", fullmatch=True), values, max_size=5
    )
)
def test_write_outputs_round_trips_any_value(outputs: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out"
        path.touch()
        assert write_outputs(outputs, {"GITHUB_OUTPUT": str(path)})
        # Read the bytes: the runner does no newline translation (and "\r" must survive).
        assert parse_file_commands(path.read_bytes().decode("utf-8")) == list(outputs.items())


def test_write_outputs_uses_the_process_environment_by_default(
    output_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(output_file))
    assert write_outputs({"total": "1"})
    assert parse_file_commands(output_file.read_text()) == [("total", "1")]


def test_write_outputs_returns_false_without_github_output(
    output_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(output_file))  # must not be consulted
    assert write_outputs({"total": "1"}, {}) is False
    assert write_outputs({"total": "1"}, {"GITHUB_OUTPUT": ""}) is False
    assert not output_file.exists()
    monkeypatch.delenv("GITHUB_OUTPUT")
    assert write_outputs({"total": "1"}) is False


# --- summary --------------------------------------------------------------------------


def test_fit_summary_leaves_a_small_summary_alone() -> None:
    text = "## title\n\n| a | b |\n" * 10
    assert fit_summary(text) == text


def test_fit_summary_keeps_a_summary_of_exactly_the_limit() -> None:
    text = ("x" * 99 + "\n") * 10
    assert fit_summary(text, limit=1000) == text
    assert fit_summary(text + "y", limit=1000) != text + "y"


def test_fit_summary_cuts_a_large_summary_on_a_line_boundary_under_1_mib() -> None:
    lines = [
        f"| task-{i:06d} | ✅ complete | café 漢字 😀 {'x' * (i % 90)} |" for i in range(30000)
    ]
    markdown = "\n".join(lines) + "\n"
    assert len(markdown.encode()) > SUMMARY_LIMIT
    result = fit_summary(markdown)
    assert len(result.encode()) <= SUMMARY_LIMIT
    kept, note = result.split("\n\n_Summary truncated", 1)
    assert NOTE in "_Summary truncated" + note
    assert kept.endswith("\n") and markdown.startswith(kept)
    assert len(kept.encode()) > SUMMARY_LIMIT - 1000  # it keeps nearly all it may


def test_fit_summary_cuts_multibyte_text_without_breaking_characters() -> None:
    markdown = "😀漢é" * 100 + "\n" + "😀漢é" * 100 + "\n"
    result = fit_summary(markdown, limit=1200)
    assert len(result.encode()) <= 1200
    assert result.startswith("😀漢é" * 100 + "\n")
    assert NOTE in result


def test_fit_summary_with_one_huge_line_keeps_only_the_note() -> None:
    result = fit_summary("x" * 5000, limit=1000)
    assert result.strip() == NOTE


def test_fit_summary_closes_a_code_block_the_cut_left_open() -> None:
    chart = "```mermaid\ngantt\n  dateFormat x\n" + "".join(
        f"  bar {i} :done, {i}000, {i}500\n" for i in range(200)
    )
    markdown = "## orchestra-ci\n\n" + chart + "```\n\n### Links\n"
    result = fit_summary(markdown, limit=2000)
    assert len(result.encode()) <= 2000
    body, note = result.rsplit("\n\n", 1)
    assert note.strip() == NOTE
    assert not open_fence(body)  # the note is text, not part of the chart
    assert body.endswith("\n```\n")
    assert markdown.startswith(body.removesuffix("```\n"))


def test_fit_summary_closes_a_long_fence_with_a_matching_run() -> None:
    markdown = "intro\n``````text\n" + "line\n" * 1000 + "``````\n"
    result = fit_summary(markdown, limit=800)
    assert len(result.encode()) <= 800
    assert not open_fence(result)
    assert "\n``````\n" in result


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["```", "```mermaid", "~~~", "````", "text", "| a | b |", "é😀", ""])
        | st.text(max_size=30).map(lambda s: s.replace("\n", " ").replace("\r", " ")),
        max_size=80,
    ),
    st.integers(min_value=150, max_value=1500),
)
def test_fit_summary_always_fits_and_keeps_whole_lines(lines: list[str], limit: int) -> None:
    markdown = "\n".join(lines) + "\n"
    result = fit_summary(markdown, limit=limit)
    assert len(result.encode()) <= limit
    if len(markdown.encode()) <= limit:
        assert result == markdown
        return
    assert result.endswith(NOTE + "\n")
    assert not open_fence(result)
    body = result[: -len(NOTE) - 3]
    if markdown.startswith(body):
        kept = body
    else:  # a fence line was added to close a block the cut left open
        closing = re.search(r"(`{3,}|~{3,})\n\Z", body)
        assert closing is not None
        kept = body[: closing.start()]
        assert open_fence(kept)
    assert markdown.startswith(kept)
    assert kept == "" or kept.endswith("\n")


def test_write_summary_appends_the_fitted_summary(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    assert write_summary("## one\n", {"GITHUB_STEP_SUMMARY": str(path)})
    assert write_summary("## two\n", {"GITHUB_STEP_SUMMARY": str(path)})
    assert path.read_text() == "## one\n## two\n"


def test_write_summary_returns_false_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    assert write_summary("## x\n", {}) is False
    assert not path.exists()


# --- print_log_group ------------------------------------------------------------------


def log_group(title: str, text: str) -> list[str]:
    out = io.StringIO()
    print_log_group(out, title, text)
    return out.getvalue().split("\n")


def test_log_group_wraps_the_text_between_stop_and_resume() -> None:
    lines = log_group("task-1: failed", "first\nsecond")
    assert lines[0] == "::group::task-1: failed"
    token = lines[1].removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert lines[2:] == ["first", "second", f"::{token}::", "::endgroup::", ""]


def test_log_group_commands_inside_the_text_are_inert() -> None:
    text = (
        "::add-mask::x\n::error::boom\n::endgroup::\n"
        "::stop-commands::mine\n::set-output name=a::b\n"
    )
    out = io.StringIO()
    print_log_group(out, "task: failed", text)
    log = out.getvalue()
    token = log.split("\n")[1].removeprefix("::stop-commands::")
    assert run_commands(log) == [
        ("group", "task: failed"),
        ("stop-commands", token),
        ("resume", token),
        ("endgroup", ""),
    ]
    assert text in log  # printed verbatim
    assert run_commands(text)[:2] == [("add-mask", "x"), ("error", "boom")]  # not inert alone


def test_log_group_token_is_random_per_call() -> None:
    tokens = {log_group("t", "x")[1] for _ in range(5)}
    assert len(tokens) == 5


def test_log_group_escapes_the_title() -> None:
    lines = log_group("a\n::error::b", "x")
    assert lines[0] == "::group::a%0A::error::b"
    assert run_commands("\n".join(lines))[0] == ("group", "a\n::error::b")


def test_log_group_does_not_double_a_final_newline_or_add_one_to_empty_text() -> None:
    lines = log_group("t", "a\n")
    token = lines[1].removeprefix("::stop-commands::")
    assert lines[2:] == ["a", f"::{token}::", "::endgroup::", ""]
    empty = log_group("t", "")
    token = empty[1].removeprefix("::stop-commands::")
    assert empty[2:] == [f"::{token}::", "::endgroup::", ""]
