"""The action's image for the container tests and the benchmark: found, built or reused.

The image is tagged by a digest of its build context (what ``.dockerignore`` lets in, plus
the Dockerfile and ``.dockerignore``), so an unchanged checkout reuses the image it built
before and any change to what ships builds a new one. Nothing here runs unless a Docker
engine answers; callers turn :class:`Unavailable` into a skip.
"""

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABEL = "org.orchestra-ci.context"


class Unavailable(Exception):
    """No engine, or no way to get the base images: the caller skips, saying why."""


def docker(
    *args: str, timeout: float = 60, check: bool = True
) -> "subprocess.CompletedProcess[str]":
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: exit {result.returncode}: {result.stderr}")
    return result


def engine() -> None:
    """Raise :class:`Unavailable` unless a Docker engine answers."""
    if shutil.which("docker") is None:
        raise Unavailable("no docker CLI on PATH")
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable("the Docker engine does not answer") from None
    if info.returncode != 0 or not info.stdout.strip():
        raise Unavailable(f"no Docker engine: {info.stderr.strip()[:200]}")


def act_binary() -> str | None:
    """nektos/act: ``$ACT`` or ``act`` on PATH."""
    explicit = os.environ.get("ACT")
    return explicit if explicit and Path(explicit).exists() else shutil.which("act")


def base_images(root: Path = REPO) -> list[str]:
    """The images the Dockerfile's FROM lines name (not its own stages)."""
    stages: set[str] = set()
    images: list[str] = []
    for line in (root / "Dockerfile").read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE)
        if match:
            if match[1] not in stages and match[1] not in images:
                images.append(match[1])
            if match[2]:
                stages.add(match[2])
    return images


def context_files(root: Path = REPO) -> list[Path]:
    """The files the build context holds, for an allow-list ``.dockerignore`` (``*`` then
    ``!path`` lines, then exclusion patterns such as ``**/__pycache__``)."""
    lines = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if lines[0] != "*":
        raise ValueError(".dockerignore is expected to start with `*` (an allow-list)")
    allowed = [line[1:].strip("/") for line in lines[1:] if line.startswith("!")]
    excluded = [line.removeprefix("**/") for line in lines[1:] if not line.startswith("!")]
    files: list[Path] = []
    for entry in [".dockerignore", *allowed]:
        path = root / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            relative = candidate.relative_to(root)
            if candidate.is_file() and not any(
                fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in excluded
            ):
                files.append(candidate)
    return files


def context_digest(root: Path = REPO) -> str:
    digest = hashlib.sha256()
    for path in context_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def have_image(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def ensure_base_images(root: Path = REPO) -> None:
    for image in base_images(root):
        if have_image(image):
            continue
        try:
            pulled = docker("pull", "--quiet", image, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"base image {image} is not here and pulling it timed out") from None
        if pulled.returncode != 0:
            raise Unavailable(f"base image {image} is not here and cannot be pulled")


def ensure_image(root: Path = REPO, timeout: float = 1800) -> str:
    """The image built from ``root``'s current context: reused if built before, else built
    (``--network host``, which builds here need and which works on any Linux engine)."""
    engine()
    digest = context_digest(root)
    tag = f"orchestra-ci:test-{digest[:16]}"
    if have_image(tag):
        return tag
    # Images of earlier contexts are stale: dropped, or a few builds fill the disk (the lab's
    # vfs driver stores every layer whole). Their parent layers stay: they are the cache.
    stale = docker("images", "--quiet", "--filter", f"label={LABEL}", check=False).stdout.split()
    if stale:
        docker("rmi", "--force", "--no-prune", *sorted(set(stale)), check=False)
    ensure_base_images(root)
    build = docker(
        "build",
        "--network",
        "host",
        "--label",
        f"{LABEL}={digest}",
        "--tag",
        tag,
        str(root),
        timeout=timeout,
        check=False,
    )
    if build.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{(build.stdout + build.stderr)[-4000:]}")
    return tag


def run_action(
    image: str,
    workspace: Path,
    env: dict[str, str],
    *,
    mounts: dict[Path, str] | None = None,
    entrypoint: list[str] | None = None,
    timeout: float = 300,
) -> "subprocess.CompletedProcess[str]":
    """``docker run`` of the image as a runner starts a container action: the workspace at
    /github/workspace (also the working directory), the host's network, ``env``, other
    ``mounts`` (host path: container path); ``entrypoint`` replaces the image's (its first
    word is the program, the rest its arguments)."""
    volumes = {workspace: "/github/workspace", **(mounts or {})}
    args = ["run", "--rm", "--network", "host", "-w", "/github/workspace"]
    args += [a for host, inside in volumes.items() for a in ("-v", f"{host}:{inside}")]
    args += [
        a
        for k, v in {"GITHUB_WORKSPACE": "/github/workspace", **env}.items()
        for a in ("-e", f"{k}={v}")
    ]
    if entrypoint:
        args += ["--entrypoint", entrypoint[0], image, *entrypoint[1:]]
    else:
        args.append(image)
    return docker(*args, timeout=timeout, check=False)
