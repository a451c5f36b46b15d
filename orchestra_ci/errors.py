"""Errors that reach the user as one line and a fixed exit code."""


def one_line(text: str) -> str:
    """``text`` as one line: line breaks and other unprintable characters escaped (they may
    come from user input, such as a file name, quoted in a message)."""
    return "".join(c if c.isprintable() or c == "\t" else ascii(c)[1:-1] for c in text)


class OrchestraError(Exception):
    """Base of every error the CLI turns into a message instead of a traceback."""

    exit_code = 1


class UsageError(OrchestraError):
    """Bad input or configuration: nothing was started (exit 2)."""

    exit_code = 2


class TaskNotFound(UsageError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r} in the queue")


class StoreError(OrchestraError):
    """The queue on disk could not be read or written."""
