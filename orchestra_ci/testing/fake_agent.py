"""A fake agent CLI whose behaviour is written in its prompt, so one queue can mix outcomes.

Usage: ``python -m orchestra_ci.testing.fake_agent "sleep=0.2 write=out.txt exit=0"``

Directives (space separated, applied in this order):

``record=FILE``       append a JSON line {task, attempt, pid, event} at start and end
``argv=FILE``         write this process's argv as JSON (to check exact argument passing)
``fail_times=N``      exit 1 on the first N calls for this task, then carry on
``ratelimit``         print a rate-limit error like Claude Code's and exit 1
``child_ignores_term`` spawn a child that ignores SIGTERM and sleeps (pid in ``child.pid``)
``daemon``            fork a detached process (new session) that sleeps for a long time
``flood=BYTES``       print that many bytes of output
``write=PATH``        write a file (relative to the working directory)
``sleep=SECONDS``     take time
``hang``              sleep until killed
``done_sentinel``     write the task's .done sentinel; ``error_sentinel`` writes .error
``crash``             die from SIGABRT
``silent``            print nothing
``exit=N``            exit with this code (default 0)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _directives(prompt: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in prompt.split():
        key, _, value = word.partition("=")
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
    if "fail_times" in d:
        state = Path(os.environ.get("ORCHESTRA_ROOT", ".")) / ".fake-state" / f"{task}.count"
        state.parent.mkdir(parents=True, exist_ok=True)
        calls = int(state.read_text()) if state.exists() else 0
        state.write_text(str(calls + 1))
        if calls < int(d["fail_times"]):
            print(f"fake agent: failing on purpose ({calls + 1}/{d['fail_times']})", flush=True)
            return 1
    if "ratelimit" in d:
        print("API Error: Request rejected (429) · Rate limit reached. Please try again later.")
        return 1
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
    if "crash" in d:
        os.kill(os.getpid(), signal.SIGABRT)
    if "record" in d:
        _record(d["record"], "end")
    if not quiet:
        print("fake agent: done", flush=True)
    return int(d.get("exit") or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
