"""What the release workflow (.github/workflows/release.yml) decides, in one tested place.

    python3 .github/scripts/release.py plan TAG OWNER        # GITHUB_OUTPUT lines
    python3 .github/scripts/release.py pin-image IMAGE       # rewrite action.yml in place
    python3 .github/scripts/release.py newest VERSION TAG... # "true" if VERSION is the newest

``plan`` accepts only a tag ``vX.Y.Z`` equal to the package version (``pyproject.toml`` and
``orchestra_ci.__version__`` must agree) and names the image and its tags:
``ghcr.io/<owner>/orchestra-ci:X.Y.Z`` and ``:X``. ``pin-image`` turns main's
``image: Dockerfile`` into ``image: docker://IMAGE`` and changes nothing else. ``newest``
says whether the major tag ``vX`` may move to this release (not when a later ``vX.*.*``
exists). Only the standard library: it runs before anything is installed.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
IMAGE_LINE = re.compile(r"^(  image: )Dockerfile[ \t]*$", re.MULTILINE)
REGISTRY = "ghcr.io"
IMAGE_NAME = "orchestra-ci"


class ReleaseError(Exception):
    """A release that must not go ahead; the message says why, in one line."""


def package_version(root: Path = ROOT) -> str:
    """The version in pyproject.toml, checked against ``orchestra_ci.__version__``."""
    with (root / "pyproject.toml").open("rb") as f:
        declared = str(tomllib.load(f)["project"]["version"])
    init = (root / "orchestra_ci" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', init, re.MULTILINE)
    if found is None:
        raise ReleaseError("orchestra_ci/__init__.py has no __version__ line")
    if found[1] != declared:
        raise ReleaseError(
            f"pyproject.toml says {declared} but orchestra_ci.__version__ is {found[1]}"
        )
    return declared


def parse_tag(tag: str) -> tuple[int, int, int]:
    match = TAG.fullmatch(tag)
    if match is None:
        raise ReleaseError(f"release tags look like v1.2.3, not {tag!r}")
    return int(match[1]), int(match[2]), int(match[3])


def plan(tag: str, owner: str, root: Path = ROOT) -> dict[str, str]:
    """The release of ``tag``: version, major, image and its tags (for GITHUB_OUTPUT)."""
    major, minor, patch = parse_tag(tag)
    version = f"{major}.{minor}.{patch}"
    packaged = package_version(root)
    if packaged != version:
        raise ReleaseError(
            f"tag {tag} does not match the package version {packaged}: bump pyproject.toml "
            "and orchestra_ci/__init__.py first, or tag that version"
        )
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", owner):
        raise ReleaseError(f"not a GitHub owner name: {owner!r}")
    image = f"{REGISTRY}/{owner.lower()}/{IMAGE_NAME}"
    return {
        "version": version,
        "major": str(major),
        "image": image,
        "tags": f"{image}:{version}\n{image}:{major}",
        "ref": f"{image}:{version}",
    }


def pin_image(action_yml: str, image: str) -> str:
    """action.yml with ``runs.image`` naming the published ``image`` instead of the
    Dockerfile; exactly one line changes."""
    if not re.fullmatch(r"[a-z0-9./_-]+:[0-9]+\.[0-9]+\.[0-9]+", image):
        raise ReleaseError(f"not an image with a version tag: {image!r}")
    pinned, count = IMAGE_LINE.subn(lambda m: f"{m[1]}docker://{image}", action_yml)
    if count != 1:
        raise ReleaseError("action.yml must say `image: Dockerfile` once under runs:")
    return pinned


def newest(version: str, tags: list[str]) -> bool:
    """True unless a tag ``vX.Y.Z`` of the same major is later than ``version``."""
    mine = parse_tag(f"v{version}")
    for tag in tags:
        if TAG.fullmatch(tag) and parse_tag(tag)[0] == mine[0] and parse_tag(tag) > mine:
            return False
    return True


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["plan", tag, owner]:
                for key, value in plan(tag, owner).items():
                    if "\n" in value:
                        print(f"{key}<<EOF\n{value}\nEOF")
                    else:
                        print(f"{key}={value}")
            case ["pin-image", image]:
                path = ROOT / "action.yml"
                path.write_text(pin_image(path.read_text(encoding="utf-8"), image))
            case ["newest", version, *tags]:
                print("true" if newest(version, tags) else "false")
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except ReleaseError as error:
        print(f"::error title=release::{error}")
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
