"""The bundled demo agent: a deterministic stand-in for a coding agent, no API key needed.

It reads its prompt, "thinks" for a moment (``ORCHESTRA_DEMO_DELAY`` seconds, default 0.2),
and writes ``orchestra-demo/<task id>.md`` in its working directory: a small real change
that shows up in the task's patch. The file lists the other tasks' files it found there,
so a dependent task's patch shows that it started from its dependencies' work.
"""

import hashlib
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m orchestra_ci.demo_agent PROMPT", file=sys.stderr)
        return 2
    prompt = argv[0]
    task_id = os.environ.get("ORCHESTRA_TASK_ID", "demo")
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    print(f"demo agent: task {task_id}: reading the prompt ({len(prompt)} characters)")
    time.sleep(float(os.environ.get("ORCHESTRA_DEMO_DELAY", "0.2")))
    out = Path("orchestra-demo") / f"{task_id}.md"
    out.parent.mkdir(exist_ok=True)
    found = sorted(p.as_posix() for p in out.parent.glob("*.md") if p != out)
    text = f"# {task_id}\n\nPrompt:\n\n> {prompt}\n\nDigest: {digest}\n"
    if found:
        text += "\nBuilds on the work already here:\n\n" + "".join(f"- {f}\n" for f in found)
    out.write_text(text, encoding="utf-8")
    print(f"demo agent: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
