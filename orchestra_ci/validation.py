"""Turn pydantic validation errors into one line that names the file and the field."""

from collections.abc import Sequence

from pydantic import ValidationError


def _loc_text(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(error: ValidationError, *, source: str, names: dict[int, str] | None = None) -> str:
    """First problem only, e.g. ``tasks.yml: task 'docs': field 'timeout': invalid duration``.

    ``names`` maps the index of an item under ``tasks`` to the id it declared, so the message
    can name the task instead of only its position.
    """
    first = error.errors()[0]
    loc = list(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    where = ""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        index = loc[1]
        name = (names or {}).get(index)
        where = f"task {name!r} (tasks[{index}])" if name else f"tasks[{index}]"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "agents":
        where = f"agent {loc[1]!r}"
        loc = loc[2:]
    parts = [source]
    if where:
        parts.append(where)
    if loc:
        parts.append(f"field {_loc_text(loc)!r}")
    parts.append(message)
    return ": ".join(parts)
