"""SIGKILL at random moments, restart on the same journal, twelve times over: no position is
forgotten, no client order id is attempted twice, and the journal stays whole.

The child (`kill_child`) trades the quiet simulated market in lockstep with a scripted pump per
start, so positions are open at many of the kills. The parent kills it at a seeded random
moment, mostly while a position is open (it reads the child's `cycle N held K` lines, so
nothing sleeps), reads what the
journal holds at that instant (the last flushed state: what a crash leaves), and starts the
next child, which recovers from it. Afterwards every `recovered` risk event must list exactly
the positions the journal held at the kill before it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.runtime.recovery import recovered_positions

ROOT = Path(__file__).resolve().parents[3]
KILLS = 12
SEED = 20261125


def _positions(events: list[JournalEvent]) -> dict[str, float]:
    """Open positions (symbol -> quantity) from `position_update`s, plus the fills a kill left
    without their update: an independent reading of the journal, not recovery's fill replay."""
    held: dict[str, float] = {}
    booked: set[int] = set()
    for ev in events:
        if ev.kind != "position_update" or ev.symbol is None:
            continue
        if ev.cause is not None:
            booked.add(ev.cause)
        if ev.payload["action"] == "close":
            held.pop(ev.symbol, None)
        else:
            held[ev.symbol] = float(ev.payload["quantity"])
    for ev in events:
        if ev.kind == "fill" and ev.seq not in booked and ev.symbol is not None:
            sign = 1.0 if ev.payload["side"] == "buy" else -1.0
            left = held.get(ev.symbol, 0.0) + sign * float(ev.payload["quantity"])
            if left > 1e-12:
                held[ev.symbol] = left
            else:
                held.pop(ev.symbol, None)
    return held


def _events(path: Path) -> list[JournalEvent]:
    with JournalReader(path) as reader:
        return list(reader.events())


def _start(path: Path, index: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (path.parent / f"child-{index}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.engine.runtime.kill_child", str(path), str(index), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )


def _stderr(path: Path, index: int) -> str:
    return (path.parent / f"child-{index}.err").read_text()[-3000:]


def _run_until(proc: subprocess.Popen[str], rng: random.Random) -> bool:
    """Read the child's progress to a random moment; False if it ended first.

    Mostly a random number of cycles after a position opened (the interesting kills), sometimes
    a random cycle regardless (before an entry, between trades)."""
    assert proc.stdout is not None
    after_entry = rng.random() < 0.85
    offset = rng.randint(5, 25) if after_entry else rng.randint(20, 200)
    opened_at: int | None = None
    for line in proc.stdout:
        _, cycle, _, held = line.split()
        if opened_at is None and int(held) > 0 and int(cycle) > 3:  # an entry of this run, not a recovered one
            opened_at = int(cycle)
        if not after_entry and int(cycle) >= offset:
            return True
        if after_entry and ((opened_at is not None and int(cycle) >= opened_at + offset) or int(cycle) >= 600):
            return True
    return False


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_no_position_and_sends_no_order_twice(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    rng = random.Random(SEED)
    at_kill: list[tuple[int, dict[str, float]]] = []  # (last seq on disk, positions) per kill
    for index in range(KILLS):
        proc = _start(path, index)
        try:
            reached = _run_until(proc, rng)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        assert reached and proc.returncode == -signal.SIGKILL, _stderr(path, index)
        on_disk = _events(path)  # what the crash left
        at_kill.append((on_disk[-1].seq if on_disk else 0, _positions(on_disk)))
    last = _start(path, KILLS, "20")
    last.communicate(timeout=60)
    assert last.returncode == 0, _stderr(path, KILLS)

    with JournalReader(path) as reader:
        assert all(f["integrity"] == "ok" for f in reader.check())
    events = _events(path)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "seqs must strictly increase with no duplicates"
    assert events[-1].kind == "run_stop"

    # After every kill, the next recovery that reached the disk (a child killed before its
    # first flush leaves nothing, and the one after it reads the same state) listed exactly
    # the positions the journal held at the kill. The last child stops cleanly, so one exists.
    recovered = recovered_positions(events)
    for last_seq, expected in at_kill:
        seq = min((s for s in recovered if s > last_seq), default=None)
        assert seq is not None, f"no recovery after the kill at seq {last_seq}"
        got = {p["symbol"]: p["quantity"] for p in recovered[seq]}
        assert got.keys() == expected.keys(), f"recovery at seq {seq} listed {sorted(got)}, journal held {sorted(expected)}"
        for symbol, qty in expected.items():
            assert got[symbol] == pytest.approx(qty, rel=1e-9)
        assert _positions([e for e in events if e.seq < seq]) == expected
    assert sum(bool(p) for _, p in at_kill) >= 4, "too few kills found a position open: the test proves little"

    # No client order id was attempted twice (a retryable rejection frees its id, as in the router).
    freed = {e.payload["client_order_id"] for e in events if e.kind == "order_result" and e.payload.get("error_class") == "retryable"}
    attempts = Counter(e.payload["client_order_id"] for e in events if e.kind == "order_attempt")
    assert not {cid: n for cid, n in attempts.items() if n > 1 and cid not in freed}
    # Positions carried over a restart were later sold under their own trace with fresh exit legs.
    carried = {p["trace_id"] for listed in recovered.values() for p in listed}
    exits = {e.trace_id for e in events if e.kind == "order_attempt" and e.payload["purpose"] != "entry"}
    assert carried & exits, "no recovered position was ever exited after its restart"
