# orchestra-ci container action: Python, git, Node.js and the agent CLIs at pinned versions.
# Container actions run as root with the workspace mounted at /github/workspace and
# HOME=/github/home; the entrypoint handles git's safe.directory and file ownership.
FROM node:22-bookworm-slim AS node

FROM python:3.12-slim-bookworm

ARG CLAUDE_CODE_VERSION=2.1.197
ARG CODEX_VERSION=0.169.0
ARG GEMINI_CLI_VERSION=0.61.0
ARG OPENCODE_VERSION=1.18.33
ARG AIDER_VERSION=0.86.2
ARG INSTALL_AIDER=false

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian stable pins git and certificates per release; exact versions would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/*

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && npm install --global --no-audit --no-fund \
        "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
        "@openai/codex@${CODEX_VERSION}" \
        "@google/gemini-cli@${GEMINI_CLI_VERSION}" \
        "opencode-ai@${OPENCODE_VERSION}" \
    && npm cache clean --force

RUN if [ "${INSTALL_AIDER}" = "true" ]; then \
        pip install --no-cache-dir "aider-chat==${AIDER_VERSION}"; \
    fi

COPY pyproject.toml README.md /opt/orchestra-ci/
COPY orchestra_ci /opt/orchestra-ci/orchestra_ci
RUN pip install --no-cache-dir /opt/orchestra-ci

# HOME (/github/home) is mounted at run time, so the CLIs' homes (Gemini CLI's settings,
# OpenCode's config directory seeded so that it does not npm-install its plugin on every
# start, a scratch TMPDIR) are prepared by the entrypoint, not here.
# Claude Code refuses --dangerously-skip-permissions as root unless told it is sandboxed;
# the CLIs stay quiet and do not update themselves in a batch.
ENV IS_SANDBOX=1 \
    DISABLE_AUTOUPDATER=1 \
    DISABLE_TELEMETRY=1 \
    DISABLE_ERROR_REPORTING=1 \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    PYTHONUNBUFFERED=1

ENTRYPOINT ["python", "-m", "orchestra_ci.action"]
