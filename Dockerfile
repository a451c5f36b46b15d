# orchestra-ci container action: Python, git, Node.js and the agent CLIs at pinned versions.
# Container actions run as root with the workspace mounted at /github/workspace and
# HOME=/github/home; the entrypoint handles git's safe.directory and file ownership.
#
# Three stages: `node` installs the agent CLIs with npm and trims them (this platform's
# binary only, one copy of each, no npm cache); `package` builds orchestra-ci; the last stage
# copies both in, its layers ordered from the least to the most often changed, so that a
# change under orchestra_ci/ rebuilds only the last layer. Sizes: see README, "The image".
FROM node:22-bookworm-slim AS node

ARG CLAUDE_CODE_VERSION=2.1.197
ARG CODEX_VERSION=0.169.0
ARG GEMINI_CLI_VERSION=0.61.0
ARG OPENCODE_VERSION=1.18.33

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Node's binary ships with its debug information; the image runs it, nobody debugs it there.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/* \
    && strip /usr/local/bin/node

RUN npm install --global --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
        "@openai/codex@${CODEX_VERSION}" \
        "@google/gemini-cli@${GEMINI_CLI_VERSION}" \
        "opencode-ai@${OPENCODE_VERSION}"

# npm installs only this platform's optional packages, but Claude Code's and OpenCode's
# postinstall scripts then link the binary into bin/ (a second name for it, which a copy to
# another stage would turn into a second copy), and OpenCode gets both x64 builds (with and
# without AVX2). bin/ holds the one each picked; the per-platform packages are not used at
# run time. Codex's voice host (audio through GStreamer) has nothing to talk to in a batch.
# Each CLI must still start (checked when the build runs natively, not under emulation).
ARG BUILDPLATFORM
ARG TARGETPLATFORM
WORKDIR /usr/local/lib/node_modules
RUN rm -rf @anthropic-ai/claude-code/node_modules opencode-ai/node_modules \
        @openai/codex/node_modules/@openai/codex-linux-*/vendor/*/codex-resources/voice \
    && if find . -type f -links +1 | grep -q .; then echo "hard links left" >&2; exit 1; fi \
    && if [ "${TARGETPLATFORM}" = "${BUILDPLATFORM}" ]; then \
        claude --version && codex --version && gemini --version && opencode --version; \
    fi

FROM python:3.12-slim-bookworm AS package

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The runtime dependencies (read from pyproject.toml) go into their own layer of the image,
# which is rebuilt only when that list changes, not on every edit of pyproject.toml.
COPY pyproject.toml README.md /src/
RUN python -c 'import tomllib; print(*tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /requirements.txt \
    && pip install --no-cache-dir "setuptools>=77"

# The package with its bytecode (checked against the source's hash, not its mtime).
COPY orchestra_ci /src/orchestra_ci
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-compile \
        --target /opt/orchestra-ci /src \
    && python -m compileall -q --invalidation-mode checked-hash /opt/orchestra-ci

FROM python:3.12-slim-bookworm

ARG AIDER_VERSION=0.86.2
ARG INSTALL_AIDER=false

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian stable pins git and certificates per release; exact versions would break rebuilds.
# No manuals, translations or apt caches (as Debian's slim images do it).
# hadolint ignore=DL3008
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
        > /etc/dpkg/dpkg.cfg.d/orchestra-ci-slim \
    && apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# Node.js and the agent CLIs, one layer each, so a new CLI version changes one layer.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
COPY --from=node /usr/local/lib/node_modules/@anthropic-ai /usr/local/lib/node_modules/@anthropic-ai
COPY --from=node /usr/local/lib/node_modules/@openai /usr/local/lib/node_modules/@openai
COPY --from=node /usr/local/lib/node_modules/@google /usr/local/lib/node_modules/@google
COPY --from=node /usr/local/lib/node_modules/opencode-ai /usr/local/lib/node_modules/opencode-ai
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && ln -s ../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe /usr/local/bin/claude \
    && ln -s ../lib/node_modules/@openai/codex/bin/codex.js /usr/local/bin/codex \
    && ln -s ../lib/node_modules/@google/gemini-cli/bundle/gemini.js /usr/local/bin/gemini \
    && ln -s ../lib/node_modules/opencode-ai/bin/opencode.exe /usr/local/bin/opencode

RUN if [ "${INSTALL_AIDER}" = "true" ]; then \
        pip install --no-cache-dir "aider-chat==${AIDER_VERSION}"; \
    fi

# orchestra-ci's dependencies; the package itself (the last layer) is found through a .pth.
COPY --from=package /requirements.txt /opt/orchestra-ci/requirements.txt
RUN pip install --no-cache-dir --requirement /opt/orchestra-ci/requirements.txt \
    && python -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "orchestra-ci.pth").write_text("/opt/orchestra-ci\n")' \
    && ln -s /opt/orchestra-ci/bin/orchestra-ci /usr/local/bin/orchestra-ci

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

COPY --from=package /opt/orchestra-ci /opt/orchestra-ci
