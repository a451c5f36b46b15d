"""The provider APIs the credential proxy holds keys for, and that agents say they speak."""

from typing import Literal

Provider = Literal["anthropic", "openai", "gemini", "openai-compatible"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "openai", "gemini", "openai-compatible")
