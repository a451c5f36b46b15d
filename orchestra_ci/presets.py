"""Built-in agent presets, as plain data (importing this must stay cheap).

The argv and patterns follow each CLI's headless mode; see the README's presets table for
the versions they target.
"""

import json
import sys
from pathlib import Path

DEFAULT_CONFIG_FILE = ".orchestra/agent-config.json"

_QUIET_CLAUDE = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_MAX_RETRIES": "2",
}

PRESETS: dict[str, dict[str, object]] = {
    "demo": {
        "command": sys.executable,
        "args": ["-m", "orchestra_ci.demo_agent", "{prompt}"],
        "description": "bundled deterministic agent: writes a small file, no API key needed",
    },
    "claude": {
        "command": "claude",
        "args": ["-p", "{prompt}", "--dangerously-skip-permissions", "--output-format", "json"],
        "env": _QUIET_CLAUDE,
        "rateLimitPatterns": [r"API Error: Request rejected \(429\)", r"529 Overloaded"],
        "fatalPatterns": ["Invalid API key", "credit balance"],
    },
    "codex": {
        "command": "codex",
        "args": [
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",
            "--color",
            "never",
            "{prompt}",
        ],
        "rateLimitPatterns": [r"last status: 429", "Too Many Requests"],
        "fatalPatterns": ["Quota exceeded", r"401 Unauthorized"],
    },
    "aider": {
        "command": "aider",
        "args": [
            "--yes-always",
            "--no-check-update",
            "--no-analytics",
            "--no-show-release-notes",
            "--no-show-model-warnings",
            "--no-pretty",
            "--no-fancy-input",
            "--no-detect-urls",
            "--message",
            "{prompt}",
        ],
        "env": {"BROWSER": "true", "COLUMNS": "400"},
        "rateLimitPatterns": ["The API provider has rate limited you"],
        "fatalPatterns": [
            "The API provider is not able to authenticate you",
            "You exceeded your current quota",
        ],
    },
    "gemini": {
        "command": "gemini",
        "args": ["-p", "{prompt}", "--yolo"],
        "rateLimitPatterns": ["RESOURCE_EXHAUSTED", r"\b429\b"],
        "fatalPatterns": ["API key not valid"],
    },
    "opencode": {
        "command": "opencode",
        "args": ["run", "{prompt}"],
        "rateLimitPatterns": [r"rate.?limit", r"\b429\b"],
        "fatalPatterns": ["invalid api key"],
    },
}


def agent_names(config_file: Path | None) -> set[str]:
    """Names of the presets and of the agents a config file defines, without validating it."""
    names = set(PRESETS)
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
            names.update(data.get("agents", {}))
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return names
