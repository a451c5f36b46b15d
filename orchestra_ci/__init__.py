"""orchestra-ci: run AI coding agents in batch, in CI or on a laptop."""

__version__ = "0.1.0"
