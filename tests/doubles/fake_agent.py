"""A fake agent CLI whose behaviour is written in its prompt, so one queue can mix outcomes.

Usage: ``python tests/doubles/fake_agent.py "sleep=0.2 write=out.txt exit=0"``

Directives (space separated, applied in this order):

``record=FILE``       append a JSON line {task, attempt, pid, event} at start and end
``argv=FILE``         write this process's argv as JSON (to check exact argument passing)
``need=PATH``         exit 1 as ``cat`` does unless PATH exists (relative to the working directory)
``fail_times=N``      exit 1 on the first N calls for this task, then carry on
``ratelimit[=S]``     print a rate-limit error like Claude Code's (asking to retry after S
                      seconds when given) and exit 1
``ratelimit_times=N`` the same, only on the first N calls for this task
``fatal``             print Claude Code's invalid-key error and exit 1
``quota[=S]``         print Codex's usage-limit error (resetting in S seconds, with its
                      ``usage_limit_reached`` JSON event; without S its billing "Quota
                      exceeded", which names no reset) and exit 1
``quota_times=N``     the same, only on the first N calls for this task
``exclusive=PATH``    hold PATH while running; finding it held, write ``PATH.overlap``
``wait_for=PATH``     wait until PATH exists (exit 3 after 60 s)
``touch=PATH``        create PATH
``child_ignores_term`` spawn a child that ignores SIGTERM and sleeps (pid in ``child.pid``)
``daemon``            fork a detached process (new session) that sleeps for a long time
``flood=BYTES``       print that many bytes of output
``write=PATH``        write a file (relative to the working directory)
``sleep=SECONDS``     take time
``hang``              sleep until killed
``done_sentinel``     write the task's .done sentinel; ``error_sentinel`` writes .error
``cost=USD``          print a Claude-Code-like JSON result with this cost, 3 turns (or
                      ``turns=N``), tokens
``crash``             die from SIGABRT
``silent``            print nothing
``exit=N``            exit with this code (default 0)

Directives named in ``FAKE_AGENT_IGNORE`` (comma separated) are ignored, so two agents
given the same prompt can behave differently (e.g. a fallback that is not rate limited).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _directives(prompt: str) -> dict[str, str]:
    ignored = set(os.environ.get("FAKE_AGENT_IGNORE", "").split(","))
    out: dict[str, str] = {}
    for word in prompt.split():
        key, _, value = word.partition("=")
        if key not in ignored:
            out[key] = value
    return out


def _record(path: str, event: str) -> None:
    line = json.dumps(
        {
            "task": os.environ.get("ORCHESTRA_TASK_ID"),
            "attempt": os.environ.get("ORCHESTRA_ATTEMPT"),
            "pid": os.getpid(),
            "event": event,
            "time": time.time(),
        }
    )
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def _count_call(task: str, kind: str) -> int:
    """How many times this task has called us for ``kind``, this call included."""
    state = Path(os.environ.get("ORCHESTRA_ROOT", ".")) / ".fake-state" / f"{task}.{kind}"
    state.parent.mkdir(parents=True, exist_ok=True)
    calls = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(calls))
    return calls


def _quota(resets_in: str) -> int:
    """Codex CLI's ways of saying a quota is spent: a plan's usage limit with its reset, or
    an API key's billing quota with none."""
    if not resets_in:
        print("ERROR: Quota exceeded. Check your plan and billing details.", file=sys.stderr)
        return 1
    seconds = int(float(resets_in))
    message = (
        "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) "
        f"or try again in {seconds} seconds."
    )
    event = {"type": "usage_limit_reached", "message": message, "resets_in_seconds": seconds}
    print(json.dumps({"type": "error", "message": message, "error": event}), flush=True)
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    return 1


def _tasks_dir() -> Path:
    return Path(os.environ["ORCHESTRA_ROOT"]) / ".orchestra" / "tasks"


def main(argv: list[str]) -> int:
    prompt = argv[-1] if argv else ""
    d = _directives(prompt)
    task = os.environ.get("ORCHESTRA_TASK_ID", "task")
    quiet = "silent" in d
    if "record" in d:
        _record(d["record"], "start")
    if "argv" in d:
        Path(d["argv"]).write_text(json.dumps(argv), encoding="utf-8")
    if not quiet:
        print(f"fake agent: task {task} attempt {os.environ.get('ORCHESTRA_ATTEMPT')}", flush=True)
    if "need" in d and not Path(d["need"]).exists():
        print(f"cat: {d['need']}: No such file or directory", flush=True)
        return 1
    if "fail_times" in d:
        calls = _count_call(task, "fail")
        if calls <= int(d["fail_times"]):
            print(f"fake agent: failing on purpose ({calls}/{d['fail_times']})", flush=True)
            return 1
    limited = "ratelimit" in d
    if "ratelimit_times" in d:
        limited = _count_call(task, "ratelimit") <= int(d["ratelimit_times"])
    if limited:
        wait = d.get("ratelimit") or d.get("retry_after")
        hint = f"Please try again in {wait}s." if wait else "Please try again later."
        print(f"API Error: Request rejected (429) · Rate limit reached. {hint}", flush=True)
        return 1
    if "fatal" in d:
        print("Invalid API key · Fix external API key", flush=True)
        return 1
    spent = "quota" in d
    if "quota_times" in d:
        spent = _count_call(task, "quota") <= int(d["quota_times"])
    if spent:
        return _quota(d.get("quota") or "")
    held = Path(d["exclusive"]) if "exclusive" in d else None
    if held is not None:
        try:
            held.touch(exist_ok=False)
        except FileExistsError:
            Path(f"{held}.overlap").write_text(task)
            held = None
    if "wait_for" in d:
        deadline = time.monotonic() + 60
        while not Path(d["wait_for"]).exists():
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.02)
    if "touch" in d:
        Path(d["touch"]).touch()
    if "child_ignores_term" in d:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(3600)",
            ]
        )
        Path("child.pid").write_text(str(child.pid))
    if "daemon" in d:
        daemon = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        Path("daemon.pid").write_text(str(daemon.pid))
    if "flood" in d:
        block = b"x" * 65535 + b"\n"
        remaining = int(d["flood"])
        while remaining > 0:
            sys.stdout.buffer.write(block[:remaining])
            remaining -= len(block)
        sys.stdout.flush()
    if "write" in d:
        target = Path(d["write"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"written by {task}\n", encoding="utf-8")
    if "sleep" in d:
        time.sleep(float(d["sleep"]))
    if "hang" in d:
        while True:
            time.sleep(3600)
    if "done_sentinel" in d:
        (_tasks_dir() / f"{task}.done").write_text("")
    if "error_sentinel" in d:
        (_tasks_dir() / f"{task}.error").write_text(
            json.dumps({"error": "fake agent gave up", "details": "", "timestamp": ""})
        )
    if "cost" in d:
        result = {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": int(d.get("turns") or 3),
            "total_cost_usd": float(d["cost"]),
            "usage": {"input_tokens": 1200, "output_tokens": 300},
            "result": "done",
        }
        print(json.dumps(result), flush=True)
    if "crash" in d:
        os.kill(os.getpid(), signal.SIGABRT)
    if held is not None:
        held.unlink()
    if "record" in d:
        _record(d["record"], "end")
    if not quiet:
        print("fake agent: done", flush=True)
    return int(d.get("exit") or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
