"""Built-in agent presets, as plain data (importing this must stay cheap).

The argv and patterns follow each CLI's headless mode; see the README's presets table for
the versions they target. ``provider`` names the API each speaks: with the credential proxy
on, every preset gets the proxy's ``ANTHROPIC_BASE_URL``/``OPENAI_BASE_URL``/
``OPENAI_API_BASE``/``GOOGLE_GEMINI_BASE_URL`` and a dummy key (Claude Code, Aider through
litellm, Gemini CLI read those), plus its ``proxyArgs``/``proxyEnv`` for CLIs that take a
custom endpoint only from their own configuration (Codex, OpenCode).
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

# What an agent that is not a preset and sets no patterns of its own is read with. They are
# read only from a failed attempt's output (an exit 0 that counts is never reread), and each
# needs the words providers use, not a bare "429" or "rate limit" that a task about rate
# limiting prints in its tests. Setting rateLimitPatterns or fatalPatterns replaces these.
DEFAULT_RATE_LIMIT_PATTERNS = [
    r"\brate[ _-]?limit(?:ed|s)?\b.{0,40}\b(?:exceeded|reached|hit)\b",
    r"\b(?:you (?:are|were|have been) |been )rate[ _-]?limited\b",
    r"\bRateLimitError\b",
    r"\b429\b.{0,10}\btoo many requests\b",
    r"\b(?:status|http|error|code)\W{0,3}429\b",
    r"\btry again in \d+(?:\.\d+)?\s*(?:ms|s|secs?|seconds?|m|mins?|minutes?)\b",
    r"\bretry[-_ ]after\W{0,3}\d+",
    r"\b(?:server|model|api|service) (?:is )?(?:currently )?overloaded\b",
]
# A spent quota (a plan's usage limit, a daily cap, no credit left) lasts until the provider
# resets it: waiting seconds does not help (see orchestra_ci.quota for the reset times read).
DEFAULT_QUOTA_PATTERNS = [
    r"\b(?:usage|quota) limit (?:reached|exceeded)\b",
    r"\busage_limit_reached\b",
    r"\binsufficient_quota\b",
    r"\bquota (?:exceeded|exhausted)\b",
    r"\bexhausted your (?:daily|weekly|monthly) quota\b",
    r"\byou(?:'ve| have) hit your (?:usage |weekly |daily |session )?limit\b",
]
DEFAULT_FATAL_PATTERNS = [
    r"\b(?:invalid|incorrect) api[ _-]?key\b",
    r"\bapi[ _-]?key (?:is )?(?:not valid|invalid|missing)\b",
    r"\b401\b\W{0,3}unauthorized\b",
]

PRESETS: dict[str, dict[str, object]] = {
    "demo": {
        "command": sys.executable,
        "args": ["-m", "orchestra_ci.demo_agent", "{prompt}"],
        "description": "bundled deterministic agent: writes a small file, no API key needed",
    },
    # Claude Code 2.1.197: `claude -p PROMPT --dangerously-skip-permissions --output-format
    # json`; API errors exit 1 and print to stdout; the JSON result carries is_error (whatever
    # the exit code: is_error true fails the attempt) and api_error_status (429/529 a rate
    # limit, 401 fatal). Its own retries are cut to 2 so that the orchestrator does the
    # backing off.
    "claude": {
        "command": "claude",
        "args": ["-p", "{prompt}", "--dangerously-skip-permissions", "--output-format", "json"],
        "env": _QUIET_CLAUDE,
        "provider": "anthropic",
        "resultFormat": "claude-json",
        "maxTurnsArgs": ["--max-turns", "{maxTurns}"],
        "rateLimitPatterns": [
            r"API Error: Request rejected \(429\)",
            r"API Error: 529 Overloaded",
            r"\"api_error_status\"\s*:\s*(429|529)",
        ],
        # Its plan limits print "Claude AI usage limit reached|<reset epoch>" or "You've
        # hit your limit · resets 5pm (UTC)"; an API key out of credit "Credit balance is
        # too low". None of them passes by backing off.
        "quotaPatterns": [
            r"usage limit reached",
            r"You've hit your (?:\w+ )?limit",
            r"(?:5-hour|weekly|daily|session) limit reached",
            r"Credit balance is too low",
        ],
        "fatalPatterns": [
            r"Invalid API key",
            r"\"api_error_status\"\s*:\s*401",
            r"cannot be used with root/sudo privileges",
        ],
    },
    # Codex CLI 0.169.0: `codex exec --json ... PROMPT`; errors on stderr, exit 1, and with
    # --json a `turn.failed` event naming the status it gave up on (its result, read as
    # codex-jsonl; its `turn.completed` events carry the usage). The -c flags
    # stop its update check, analytics, the start-up `git ls-remote` of plugins, and
    # endless reconnecting when the endpoint is down. Through the proxy it uses a provider
    # of its own (this version speaks only the Responses API), keyed by OPENAI_API_KEY.
    "codex": {
        "command": "codex",
        "args": [
            "exec",
            "--json",
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
        "provider": "openai",
        "resultFormat": "codex-jsonl",
        "proxyArgs": [
            "-c",
            "model_provider=orchestra",
            "-c",
            'model_providers.orchestra.name="orchestra-ci credential proxy"',
            "-c",
            'model_providers.orchestra.base_url="{proxyBaseUrl}"',
            "-c",
            'model_providers.orchestra.env_key="OPENAI_API_KEY"',
            "-c",
            'model_providers.orchestra.wire_api="responses"',
        ],
        "rateLimitPatterns": [r"last status: 429", r"429 Too Many Requests"],
        # A plan's limit: "You've hit your usage limit. ... try again in 2 days 3 hours" (the
        # backend's usage_limit_reached, with resets_in_seconds); an API key's billing quota:
        # "Quota exceeded. Check your plan and billing details." (no reset time).
        "quotaPatterns": [
            r"usage_limit_reached",
            r"You've hit your usage limit",
            r"Quota exceeded",
            r"insufficient_quota",
        ],
        "fatalPatterns": [r"401 Unauthorized", r"Incorrect API key"],
    },
    # Aider 0.86.2 exits 0 even when every API call failed: success is read from its output.
    # It reads OPENAI_API_BASE, and litellm ANTHROPIC_BASE_URL, so the proxy's variables do.
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
        "provider": "openai",
        "successPatterns": [r"^Applied edit to ", r"^Commit [0-9a-f]{7,}"],
        "rateLimitPatterns": ["The API provider has rate limited you"],
        # litellm reports OpenAI's insufficient_quota as a RateLimitError: the words decide.
        "quotaPatterns": ["You exceeded your current quota", "insufficient_quota"],
        "fatalPatterns": ["The API provider is not able to authenticate you"],
    },
    # Gemini CLI 0.61.0 headless mode: `gemini -p PROMPT --yolo` (auto-approves tools);
    # --skip-trust, else --yolo is downgraded and it exits 55. Its exit code is the HTTP
    # status mod 256 on an API error, but 0 when stopped by SIGTERM: success is its `-o json`
    # result holding a `response`. One process (by default it relaunches itself as a child,
    # and the parent ignores SIGTERM). Its own retries are bounded by `general.maxAttempts`
    # in ~/.gemini/settings.json (the Action writes it). A daily quota is spent until the
    # next day (it names no reset time); a per-minute one ("You exceeded your current quota,
    # ... Please retry in 2.0s") is a rate limit.
    "gemini": {
        "command": "gemini",
        "args": ["-p", "{prompt}", "--yolo", "--skip-trust", "-o", "json"],
        "env": {"GEMINI_CLI_NO_RELAUNCH": "true", "NO_COLOR": "1"},
        "provider": "gemini",
        "resultFormat": "gemini-json",
        "rateLimitPatterns": [
            r"You exceeded your current quota",
            r"The model is overloaded",
            r"\"code\"\s*:\s*(429|503)\b",
        ],
        "quotaPatterns": [r"exhausted your daily quota"],
        "fatalPatterns": [
            r"API key not valid",
            r"must specify the GEMINI_API_KEY",
            r"Invalid auth method selected",
            r"not running in a trusted directory",
            r"\"code\"\s*:\s*(401|403)\b",
        ],
    },
    # OpenCode 1.18.33: `opencode run --title=TASK PROMPT` (a title given skips a model call
    # to make one). It exits 0 after auto-rejecting a permission it asked for: its output is
    # read for that. No fetch of the models list, no self-update. Through the proxy its
    # OpenAI provider gets the proxy's base URL from OPENCODE_CONFIG_CONTENT (config merged
    # over its files).
    "opencode": {
        "command": "opencode",
        "args": ["run", "--title={taskId}", "{prompt}"],
        "env": {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"},
        "provider": "openai",
        "resultFormat": "opencode-run",
        "proxyEnv": {
            "OPENCODE_CONFIG_CONTENT": json.dumps(
                {"provider": {"openai": {"options": {"baseURL": "{proxyBaseUrl}"}}}}
            )
        },
        "rateLimitPatterns": [r"Rate limit reached", r"\"statusCode\"\s*:\s*429\b"],
        "quotaPatterns": [r"You exceeded your current quota", r"insufficient_quota"],
        "fatalPatterns": [
            r"Incorrect API key provided",
            r"\"statusCode\"\s*:\s*401\b",
        ],
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
