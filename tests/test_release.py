"""The release workflow's decisions (.github/scripts/release.py) and how the workflow uses
them: the released tag is the package version, the released action.yml runs the published
image, main's keeps building the Dockerfile, the major tag only moves forward."""

import fnmatch
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import orchestra_ci

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
SCRIPT = ROOT / ".github" / "scripts" / "release.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


release = load_script()


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def steps(job: str) -> list[dict[str, Any]]:
    return list(workflow()["jobs"][job]["steps"])


def test_package_version_is_one_version() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert orchestra_ci.__version__ == declared == release.package_version()


def test_plan_for_the_package_version() -> None:
    version = orchestra_ci.__version__
    major = version.split(".")[0]
    got = release.plan(f"v{version}", "Octo-Org")
    image = "ghcr.io/octo-org/orchestra-ci"  # GHCR names are lower case
    assert got == {
        "version": version,
        "major": major,
        "image": image,
        "tags": f"{image}:{version}\n{image}:{major}",
        "ref": f"{image}:{version}",
    }


@pytest.mark.parametrize("tag", ["v99.0.0", "v0.0.0"])
def test_a_tag_that_is_not_the_package_version_is_refused(tag: str) -> None:
    with pytest.raises(release.ReleaseError, match="does not match the package version"):
        release.plan(tag, "octo")


@pytest.mark.parametrize("tag", ["0.1.0", "v0.1", "v1.2.3-rc1", "v01.2.3", "v1.2.3.4", "vx.y.z"])
def test_only_plain_version_tags_are_releases(tag: str) -> None:
    with pytest.raises(release.ReleaseError, match="release tags look like"):
        release.plan(tag, "octo")


def test_versions_that_disagree_stop_the_release(tmp_path: Path) -> None:
    (tmp_path / "orchestra_ci").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.3"\n')
    (tmp_path / "orchestra_ci" / "__init__.py").write_text('__version__ = "1.2.4"\n')
    with pytest.raises(release.ReleaseError, match=r"1\.2\.3 but orchestra_ci.__version__ is"):
        release.plan("v1.2.3", "octo", root=tmp_path)


def test_the_workflow_trigger_matches_exactly_what_plan_accepts() -> None:
    (pattern,) = workflow()[True]["push"]["tags"]  # PyYAML reads the key `on` as True
    assert pattern == "v*.*.*"
    for tag in ("v0.1.0", "v1.0.0", "v12.34.56"):
        assert fnmatch.fnmatchcase(tag, pattern) and release.TAG.fullmatch(tag)
    # the glob lets these through; plan then refuses them, so nothing is published
    for tag in ("v1.2.3-rc1", "v1.2.3.4"):
        assert fnmatch.fnmatchcase(tag, pattern) and not release.TAG.fullmatch(tag)


def test_released_action_yml_runs_the_published_image() -> None:
    main = (ROOT / "action.yml").read_text()
    assert yaml.safe_load(main)["runs"] == {"using": "docker", "image": "Dockerfile"}
    image = f"ghcr.io/octo/orchestra-ci:{orchestra_ci.__version__}"
    pinned = release.pin_image(main, image)
    assert yaml.safe_load(pinned)["runs"] == {"using": "docker", "image": f"docker://{image}"}
    changed = [
        (a, b) for a, b in zip(main.splitlines(), pinned.splitlines(), strict=True) if a != b
    ]
    assert changed == [("  image: Dockerfile", f"  image: docker://{image}")]
    with pytest.raises(release.ReleaseError, match="once under runs"):
        release.pin_image(pinned, image)  # already pinned: nothing to rewrite
    with pytest.raises(release.ReleaseError, match="version tag"):
        release.pin_image(main, "ghcr.io/octo/orchestra-ci:latest")


def test_the_major_tag_only_moves_forward() -> None:
    tags = ["v1.0.0", "v1.2.0", "v1.3.0", "v2.0.0", "nightly"]
    assert release.newest("1.3.0", tags)
    assert release.newest("1.3.1", tags)
    assert not release.newest("1.2.1", tags)  # a fix for an older minor leaves v1 alone
    assert release.newest("2.0.0", tags)


def test_the_script_as_the_workflow_calls_it() -> None:
    version = orchestra_ci.__version__
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "plan", f"v{version}", "octo"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"version={version}\n" in ok.stdout
    assert f"tags<<EOF\nghcr.io/octo/orchestra-ci:{version}\n" in ok.stdout
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "plan", "v99.0.0", "octo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stdout.startswith("::error title=release::tag v99.0.0 does not match")


def test_the_workflow_wires_the_plan_through() -> None:
    jobs = workflow()["jobs"]
    assert list(jobs) == ["plan", "image", "release"]
    plan_run = " ".join(s.get("run", "") for s in steps("plan"))
    assert 'release.py plan "$TAG" "$OWNER" >> "$GITHUB_OUTPUT"' in plan_run
    build = next(s for s in steps("image") if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ needs.plan.outputs.tags }}"
    assert jobs["image"]["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"
    script = next(s["run"] for s in steps("release") if "pin-image" in s.get("run", ""))
    assert 'release.py pin-image "$REF"' in script
    assert 'git tag --force "v$MAJOR"' in script and "release.py newest" in script
    # least privilege: nothing at the top, each job names what it needs
    assert workflow()["permissions"] == {}
    assert jobs["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert jobs["release"]["permissions"] == {"contents": "write"}


def test_every_action_is_pinned_by_commit() -> None:
    uses = [s["uses"] for job in workflow()["jobs"] for s in steps(job) if "uses" in s]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
    text = WORKFLOW.read_text()
    for ref in uses:  # with the version it stands for, as in ci.yml
        assert re.search(re.escape(ref) + r" # v\d+\.\d+\.\d+\n", text), ref
