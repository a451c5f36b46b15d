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
    # Claude Code 2.1.197: `claude -p PROMPT --dangerously-skip-permissions --output-format
    # json`; API errors exit 1 and print to stdout; the JSON result carries api_error_status.
    # Its own retries are cut to 2 so that the orchestrator does the backing off.
    "claude": {
        "command": "claude",
        "args": ["-p", "{prompt}", "--dangerously-skip-permissions", "--output-format", "json"],
        "env": _QUIET_CLAUDE,
        "rateLimitPatterns": [
            r"API Error: Request rejected \(429\)",
            r"API Error: 529 Overloaded",
            r"\"api_error_status\"\s*:\s*(429|529)",
        ],
        "fatalPatterns": [
            r"Invalid API key",
            r"credit balance",
            r"\"api_error_status\"\s*:\s*401",
            r"cannot be used with root/sudo privileges",
        ],
    },
    # Codex CLI 0.169.0: `codex exec ... PROMPT`; errors on stderr, exit 1. The -c flags
    # stop its update check, analytics, the start-up `git ls-remote` of plugins, and
    # endless reconnecting when the endpoint is down.
    "codex": {
        "command": "codex",
        "args": [
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",
            "--color",
            "never",
            "-c",
            "check_for_update_on_startup=false",
            "-c",
            "analytics.enabled=false",
            "-c",
            "features.plugins=false",
            "-c",
            "features.unbounded_connection_retries=false",
            "{prompt}",
        ],
        "rateLimitPatterns": [r"last status: 429", r"429 Too Many Requests"],
        "fatalPatterns": [r"Quota exceeded", r"401 Unauthorized", r"Incorrect API key"],
    },
    # Aider 0.86.2 exits 0 even when every API call failed: success is read from its output.
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
        "successPatterns": [r"^Applied edit to ", r"^Commit [0-9a-f]{7,}"],
        "rateLimitPatterns": ["The API provider has rate limited you"],
        "fatalPatterns": [
            "The API provider is not able to authenticate you",
            "You exceeded your current quota",
        ],
    },
    # Gemini CLI 0.61.0 headless mode: `gemini -p PROMPT --yolo` (auto-approves tools).
    "gemini": {
        "command": "gemini",
        "args": ["-p", "{prompt}", "--yolo"],
        "rateLimitPatterns": ["RESOURCE_EXHAUSTED", r"\b429\b"],
        "fatalPatterns": ["API key not valid"],
    },
    # OpenCode 1.18.33: `opencode run PROMPT`.
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
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            pass
    return names
