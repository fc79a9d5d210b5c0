"""The fake engine the console is built against: deterministic, contract-valid, and it reacts
to commands the way the real engine must (pause, close-all to flat with progress, shutdown)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any

import pytest

from engine.domain import Side
from engine.errors import MarketDataError, TraceNotFoundError
from engine.journal.events import KINDS, validate_event
from engine.runtime.client import Command, EngineClient
from engine.runtime.fake_client import FakeEngineClient
from tests.kit.waiting import eventually


def test_it_is_an_engine_client() -> None:
    assert isinstance(FakeEngineClient(candidates=10, positions=1), EngineClient)


def test_same_seed_same_snapshots() -> None:
    a, b = FakeEngineClient(seed=3), FakeEngineClient(seed=3)
    assert a.step(30) == b.step(30)
    assert FakeEngineClient(seed=4).step(30) != a.latest()


def test_snapshot_has_the_requested_shape() -> None:
    snap = FakeEngineClient(candidates=500, positions=20).step()
    assert len(snap.candidates) == 500 and len(snap.positions) == 20
    assert [c.rank for c in snap.candidates] == list(range(1, 501))
    assert {s.name for s in snap.status.streams} == {"ticker", "kline", "listing", "social"}
    assert any(c.price < 1e-4 for c in snap.candidates), "micro-priced coins exercise chart rescaling"
    assert len(snap.events) <= 200


def test_every_journaled_event_meets_the_contract() -> None:
    fake = FakeEngineClient()
    fake.step(60)
    kinds = {e.kind for e in fake.journal}
    assert {"candidate_snapshot", "signal_snapshot", "order_attempt", "fill", "position_update", "state_change"} <= kinds
    for e in fake.journal:
        assert e.kind in KINDS
        validate_event(e.kind, e.ts_ms, e.payload)


def test_scripted_outage_degrades_then_recovers_with_stream_age() -> None:
    fake = FakeEngineClient()
    snap = fake.step(55)
    ticker = next(s for s in snap.status.streams if s.name == "ticker")
    assert snap.status.state == "degraded" and ticker.status == "stale"
    assert ticker.last_message_ms is not None and snap.ts_ms - ticker.last_message_ms > 0
    assert fake.step(10).status.state == "tradeable"


async def test_pause_and_resume_are_recorded_and_published() -> None:
    fake = FakeEngineClient()
    result = await fake.send(Command.PAUSE, "test")
    assert result.accepted and fake.latest() is not None and fake.latest().status.paused  # type: ignore[union-attr]
    await fake.send(Command.RESUME, "test")
    assert not fake.latest().status.paused  # type: ignore[union-attr]
    assert fake.commands == [(Command.PAUSE, "test"), (Command.RESUME, "test")]
    assert [e.payload["command"] for e in fake.journal if e.kind == "command"] == ["pause", "resume"]


async def test_close_all_flattens_over_a_few_cycles_with_progress() -> None:
    fake = FakeEngineClient(positions=6, close_per_step=2)
    await fake.send(Command.CLOSE_ALL, "test")
    first = fake.latest()
    assert first is not None and first.close_all is not None and first.close_all.remaining == 6
    remaining = [fake.step().close_all.remaining for _ in range(3)]  # type: ignore[union-attr]
    assert remaining == [4, 2, 0]
    snap = fake.step(5)
    assert snap.positions == () and snap.close_all is not None and snap.close_all.done
    assert snap.status.paused, "no new entries after an emergency close until resumed"
    for symbol in {p.symbol for p in first.positions}:
        assert [f.side for f in await fake.fills(symbol)][-1] is Side.SELL


async def test_updates_skip_to_newest_and_end_on_shutdown() -> None:
    fake = FakeEngineClient(candidates=20, positions=2)
    seen: list[int] = []

    async def read() -> None:
        async for snap in fake.updates():
            seen.append(snap.seq)

    reader = asyncio.create_task(read())
    await eventually(lambda: seen == [1])
    fake.step(3)  # three cycles before the reader runs: it sees only the newest
    await eventually(lambda: seen[-1] == 4)
    assert seen == [1, 4]
    assert (await fake.send(Command.SHUTDOWN, "test")).accepted
    await asyncio.wait_for(reader, 2)
    assert not (await fake.send(Command.PAUSE, "test")).accepted
    assert fake.journal[-1].kind == "run_stop"


async def test_autoplay_publishes_on_its_own() -> None:
    fake = FakeEngineClient(candidates=20, positions=2, autoplay_s=0.01)
    it = fake.updates()
    seqs = [(await anext(it)).seq for _ in range(3)]
    assert seqs == sorted(seqs) and seqs[-1] >= 3
    await fake.stop()


async def test_candles_end_at_the_current_price_and_fit_the_timeframe() -> None:
    fake = FakeEngineClient(candidates=20, positions=0)
    snap = fake.step()
    row = snap.candidates[0]
    candles = await fake.candles(row.symbol, "5m", 50)
    assert len(candles) == 50 and candles[-1].close == row.price
    assert all(b.open_ms - a.open_ms == 300_000 for a, b in pairwise(candles))
    assert all(c.validate() for c in candles)
    with pytest.raises(MarketDataError, match="unknown symbol"):
        await fake.candles("NOPE/USDT", "1m", 10)


async def test_trace_by_prefix_and_errors_name_the_problem() -> None:
    fake = FakeEngineClient(positions=1)
    trace_id = fake.latest().positions[0].trace_id  # type: ignore[union-attr]
    events = await fake.trace(trace_id[:10])
    assert [e.kind for e in events] == [
        "candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt", "order_result", "fill", "position_update",
    ]  # fmt: skip
    assert all(e.cause == prev.seq for prev, e in pairwise(events))
    assert all(rule["passed"] for rule in events[1].payload["rules"]), "an entry's rules all passed"
    with pytest.raises(TraceNotFoundError, match="no trace 'zzz'") as info:
        await fake.trace("zzz")
    assert info.value.nearest


@pytest.mark.parametrize("operation", ["send", "candles", "fills", "trace"])
async def test_fail_next_fails_exactly_once(operation: str) -> None:
    fake = FakeEngineClient(candidates=10, positions=1)
    symbol = fake.latest().positions[0].symbol  # type: ignore[union-attr]
    trace = fake.latest().positions[0].trace_id  # type: ignore[union-attr]
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "send": lambda: fake.send(Command.PAUSE, "t"),
        "candles": lambda: fake.candles(symbol, "1m", 5),
        "fills": lambda: fake.fills(symbol),
        "trace": lambda: fake.trace(trace),
    }
    fake.fail_next(operation, ConnectionError("down"))
    with pytest.raises(ConnectionError):
        await calls[operation]()
    await calls[operation]()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="positions <= candidates"):
        FakeEngineClient(candidates=2, positions=5)
    with pytest.raises(ValueError, match="unknown operation 'nope'"):
        FakeEngineClient(candidates=2, positions=0).fail_next("nope", RuntimeError())
