"""Scale-out across a matrix, simulated locally: plan, three shard runs, merge."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FAKE_AGENT, cli_env, write_agents

TASKS = (
    "defaults: {agent: fake}\ntasks:\n"
    + "".join(f"  - {{id: t{n:02d}, prompt: 'record=RECORD sleep=0.05'}}\n" for n in range(10))
    + (
        "  - {id: base, prompt: 'record=RECORD'}\n"
        "  - {id: child, prompt: 'record=RECORD', depends_on: [base]}\n"
    )
)


def orchestra(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or cli_env(),
        check=False,
    )


def shard_root(tmp_path: Path, name: str, record: Path) -> Path:
    root = tmp_path / name
    (root / ".orchestra").mkdir(parents=True)
    write_agents(root, {"fake": FAKE_AGENT})
    (root / ".orchestra/tasks.yml").write_text(TASKS.replace("RECORD", str(record)))
    return root


def test_three_shards_then_merge(tmp_path: Path) -> None:
    record = tmp_path / "starts.jsonl"
    roots = [shard_root(tmp_path, f"shard{k}", record) for k in (1, 2, 3)]
    output = tmp_path / "github_output"
    plan = orchestra(
        "--root", str(roots[0]), "plan", "--shards", "3", env=cli_env(GITHUB_OUTPUT=str(output))
    )
    assert plan.returncode == 0, plan.stderr
    matrix = json.loads(plan.stdout)
    assert matrix["shard"] == ["1/3", "2/3", "3/3"]
    assert sum(entry["tasks"] for entry in matrix["include"]) == 12
    assert output.read_text().startswith("matrix<<ghadelimiter_")

    for k, root in enumerate(roots, start=1):
        run = orchestra("--root", str(root), "run", "--shard", f"{k}/3", "--parallel", "2")
        assert run.returncode == 0, run.stderr
        report = json.loads((root / ".orchestra/results.json").read_text())
        assert report["shard"] == f"{k}/3"

    # every task ran exactly once, in exactly one shard; dependents stayed with their base
    starts = [json.loads(line) for line in record.read_text().splitlines()]
    started = sorted(e["task"] for e in starts if e["event"] == "start")
    assert started == sorted([f"t{n:02d}" for n in range(10)] + ["base", "child"])
    owners = {
        task: k
        for k, root in enumerate(roots, start=1)
        for task in json.loads((root / ".orchestra/results.json").read_text())["tasks"]
        for task in [task["id"]]
    }
    assert owners["base"] == owners["child"]

    merged_root = tmp_path / "merged"
    merged_root.mkdir()
    summary = tmp_path / "summary.md"
    merge = orchestra(
        "--root",
        str(merged_root),
        "merge",
        *map(str, roots),
        "--shards",
        "3",
        env=cli_env(GITHUB_STEP_SUMMARY=str(summary)),
    )
    assert merge.returncode == 0, merge.stderr
    merged = json.loads((merged_root / ".orchestra/results.json").read_text())
    assert sorted(t["id"] for t in merged["tasks"]) == sorted(owners)
    assert merged["totals"]["complete"] == 12 and merged["missingShards"] == []
    assert "Shards" in summary.read_text()

    # The merged queue (each task's files from the shard that ran it) is the next run's
    # state: a shard of the next run that carries on from it runs nothing again.
    queue = merged_root / ".orchestra"
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in queue.glob("tasks/*.json")}
    assert statuses == dict.fromkeys(owners, "complete")
    assert all((queue / "logs" / f"{task}.log").is_file() for task in owners)
    write_agents(merged_root, {"fake": FAKE_AGENT})
    (queue / "tasks.yml").write_text(TASKS.replace("RECORD", str(record)))
    starts_before = len(record.read_text().splitlines())
    again = orchestra("--root", str(merged_root), "run", "--shard", "1/3")
    assert again.returncode == 0, again.stderr
    assert len(record.read_text().splitlines()) == starts_before

    # a shard that never reported is named, and the merge fails
    shutil.rmtree(roots[2] / ".orchestra")
    merge = orchestra("--root", str(merged_root), "merge", *map(str, roots), "--shards", "3")
    assert merge.returncode != 0
    merged = json.loads((merged_root / ".orchestra/results.json").read_text())
    assert merged["missingShards"] == ["3/3"]
    assert "orchestra-ci: error: shard 3/3 did not report" in merge.stderr


def test_bad_shard_is_a_usage_error(tmp_path: Path) -> None:
    root = shard_root(tmp_path, "one", tmp_path / "r.jsonl")
    result = orchestra("--root", str(root), "run", "--shard", "4/3")
    assert result.returncode == 2
    assert "shard" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plan_with_fewer_tasks_than_shards_says_so(tmp_path: Path) -> None:
    root = shard_root(tmp_path, "few", tmp_path / "r.jsonl")
    (root / ".orchestra/tasks.yml").write_text("tasks:\n  - {id: a, agent: fake, prompt: x}\n")
    plan = orchestra("--root", str(root), "plan", "--shards", "3")
    assert plan.returncode == 0
    assert (
        plan.stderr
        == "orchestra-ci: notice: 1 tasks for 3 shards: 2 shards will have nothing to do\n"
    )
    assert json.loads(plan.stdout)["shard"] == ["1/3", "2/3", "3/3"]
