"""The README's quick start and its ccxt.pro script stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.kit.waiting import eventually_sync

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_exactly_two_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert text.index("```sh") < text.index("\n## ")


def test_readme_ccxt_script_talks_to_the_sim_exchange(tmp_path: Path) -> None:
    script = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert script is not None
    exe = Path(sys.executable).parent / "hotcoin"
    server = subprocess.Popen(
        [str(exe), "sim-exchange", "--port", "0", "--symbols", "40", "--speed", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), base
        host = base.removeprefix("http://")
        code = script.group(1).replace('HOST = "127.0.0.1:8765"', f'HOST = "{host}"')
        (tmp_path / "try_sim.py").write_text(code)
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, str(tmp_path / "try_sim.py")],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ.copy(),
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert re.search(r"\d+ markets, \d+ tickers streamed", out.stdout), out.stdout
        assert "closed, filled 0.05" in out.stdout
        assert time.monotonic() - started < 120
    finally:
        server.terminate()
        eventually_sync(lambda: server.poll() is not None, timeout=10)
        server.communicate()
