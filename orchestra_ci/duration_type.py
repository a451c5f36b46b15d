"""The pydantic field type for a duration, shared by settings, agents and tasks files.

Kept apart from :mod:`orchestra_ci.durations` so that commands that only print durations
(``status``) do not import pydantic.
"""

from typing import Annotated

from pydantic import BeforeValidator

from orchestra_ci.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
