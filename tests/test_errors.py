"""Errors reach the user as one line."""

from orchestra_ci.errors import one_line


def test_one_line_escapes_every_line_break() -> None:
    text = "a\rb\nc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i"
    assert len(one_line(text).splitlines()) == 1
    assert one_line(text) == "a\\rb\\nc\\x0bd\\x0ce\\x1cf\\x85g\\u2028h\\u2029i"


def test_one_line_keeps_printable_text_and_tabs() -> None:
    assert one_line("tâche «x»\tété 🙂") == "tâche «x»\tété 🙂"
