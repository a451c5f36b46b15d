"""orchestra-ci: run AI coding agents in batch, in CI or on a laptop."""

import time

__version__ = "0.1.0"

# The run's clock: a time budget counts from here, the start of the process.
STARTED = time.monotonic()
