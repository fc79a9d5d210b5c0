"""The console lowers its own priority, never its engine's.

Each check runs in a subprocess: niceness only goes one way for an unprivileged process, and
the test runner itself must keep its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_script(body: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_lower_priority_is_absolute_and_never_raises_priority() -> None:
    out = run_script("""
        import json, os
        from hotcoin_tui.priority import lower_priority
        start = os.getpriority(os.PRIO_PROCESS, 0)
        steps = [lower_priority(0), lower_priority(start + 5), lower_priority(start + 5), lower_priority(start + 2)]
        print(json.dumps({"start": start, "steps": steps, "now": os.getpriority(os.PRIO_PROCESS, 0)}))
    """)
    start = out["start"]
    assert out["steps"] == [start, start + 5, start + 5, start + 5]
    assert out["now"] == start + 5


def test_the_console_steps_back_once_its_engine_child_runs_and_the_child_keeps_its_priority(tmp_path: Path) -> None:
    out = run_script(
        """
        import asyncio, json, os
        from pathlib import Path
        from engine.runtime.client import Command
        from hotcoin_tui.child_engine import child_engine

        async def main():
            data = Path(os.environ["HOTCOIN_PATHS__DATA_DIR"])
            start = os.getpriority(os.PRIO_PROCESS, 0)
            args = ["--demo", "--symbols", "40", "--no-http"]
            async with child_engine(args, data, data / "engine.log", nice=start + 7) as child:
                me = os.getpid()
                kids = Path(f"/proc/{me}/task/{me}/children").read_text().split()
                children = [os.getpriority(os.PRIO_PROCESS, int(pid)) for pid in kids]
                console = os.getpriority(os.PRIO_PROCESS, 0)
                await child.client.send(Command.SHUTDOWN, "test")
            print(json.dumps({"start": start, "console": console, "children": children}))

        asyncio.run(main())
        """,
        env={"HOTCOIN_PATHS__DATA_DIR": str(tmp_path)},
    )
    assert out["console"] == out["start"] + 7
    assert out["children"] == [out["start"]]
