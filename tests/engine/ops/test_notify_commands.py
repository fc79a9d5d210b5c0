"""Telegram commands: only the owner's chat, through an EngineClient, close-all confirmed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.journal.events import JournalEvent
from engine.ops.notify.telegram import TelegramBot
from engine.ops.notify.telegram_commands import (
    POLL_RETRY_MAX_S,
    POLL_RETRY_MIN_S,
    REFUSALS_PER_MINUTE,
    TelegramCommands,
    format_status,
)
from engine.runtime.client import Command, EngineClient
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.local_client import LocalEngineClient
from engine.runtime.snapshot import CloseAllProgress
from tests.engine.ops.notify_sink import HttpSink
from tests.kit.engine import pump_rig
from tests.kit.events import RecordingSink
from tests.kit.snapshots import make_snapshot
from tests.kit.waiting import eventually

TOKEN = "42:token"
OWNER = 555
NOW = 1_767_614_400.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    s = HttpSink()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def bot(sink: HttpSink) -> AsyncIterator[TelegramBot]:
    b = TelegramBot(sink.base_url, TOKEN)
    yield b
    await b.aclose()


def update(text: str, *, chat: int = OWNER, update_id: int = 1, date: float = NOW, user: str = "owner") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {"message_id": update_id, "date": int(date), "chat": {"id": chat}, "from": {"id": 9, "username": user}, "text": text},
    }


async def trace_events_none(trace_id: str) -> list[JournalEvent]:
    return []


def commands(bot: TelegramBot, engine: EngineClient, clock: Clock) -> TelegramCommands:
    return TelegramCommands(bot, OWNER, engine, confirm_window_s=60, clock=clock, sleep=clock.sleep, new_code=lambda: "123456")


async def test_status_and_positions_read_the_latest_snapshot(bot: TelegramBot, sink: HttpSink) -> None:
    engine = FakeEngineClient(candidates=20, positions=3)
    tc = commands(bot, engine, Clock())
    status = await tc.process(update("/status"))
    assert status is not None
    assert status.startswith("tradeable · PAPER · risk L2")
    assert "3 position(s) · 20 candidate(s)" in status
    positions = await tc.process(update("/positions@hotcoin_bot", update_id=2))
    assert positions is not None
    snap = engine.latest()
    assert snap is not None
    for p in snap.positions:
        assert p.symbol in positions
    assert sink.sent_texts() == [status, positions]
    assert all(r.body["chat_id"] == OWNER for r in sink.requests)
    assert engine.commands == []


def test_status_says_why_a_close_all_is_stuck() -> None:
    """/status said "close-all: 1/2 left" while the exchange refused the sell; now the refusal
    too, and not the positions whose exit is merely in flight."""
    halted = "OLRP/USDT: exit refused: Market is closed. (-1013), retrying in 30 s"
    snap = make_snapshot(close_all=CloseAllProgress(1, 2, 2, (halted, "DOGE/USDT: still open")))
    assert format_status(snap).endswith(f"close-all: 2/2 left\n  {halted}")


@pytest.mark.parametrize(("text", "command"), [("/pause", Command.PAUSE), ("/resume", Command.RESUME)], ids=["pause", "resume"])
async def test_pause_and_resume_go_through_the_client(bot: TelegramBot, text: str, command: Command) -> None:
    engine = FakeEngineClient(candidates=5, positions=1)
    reply = await commands(bot, engine, Clock()).process(update(text))
    assert engine.commands == [(command, "telegram:owner#9")]
    assert reply is not None
    assert reply.startswith("done: ")


async def test_status_right_after_resume_says_what_the_engine_now_does(bot: TelegramBot, sink: HttpSink, tmp_path: Path) -> None:
    """/pause, /status, /resume, /status in one batch of updates, on the real engine with no
    market batch between them: /status read the snapshot of the last cycle and said "(paused)"
    right after "done: entries resumed". Each answer now reflects the command before it."""
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        await engine.cycle.warmup()
        first = await engine.feed.next_batch()
        engine._now = first.ts_ms
        await engine.cycle.begin(first, "sim")
        await engine._cycle(first)
        client = LocalEngineClient(engine.hub, engine.command, engine.candles, engine.fills, trace_events_none)
        tc = commands(bot, client, Clock())

        async def answer(text: str, update_id: int) -> str | None:
            reply = asyncio.create_task(tc.process(update(text, update_id=update_id)))
            await eventually(lambda: reply.done() or not engine._commands.empty())
            await engine._drain_commands()  # what the engine's loop does between market batches
            return await reply

        replies = [await answer(text, i) for i, text in enumerate(("/pause", "/status", "/resume", "/status"), start=1)]
    assert replies[0] == "done: new entries paused"
    assert replies[1] is not None and replies[1].startswith("tradeable (paused) ·")
    assert replies[2] == "done: entries resumed"
    assert replies[3] is not None and replies[3].startswith("tradeable ·")


async def test_close_all_needs_the_code_within_the_window(bot: TelegramBot) -> None:
    engine = FakeEngineClient(candidates=10, positions=2)
    clock = Clock()
    tc = commands(bot, engine, clock)
    ask = await tc.handle("/closeall")
    assert "2 position(s)" in ask
    assert "/confirm 123456 within 60 s" in ask
    assert engine.commands == []
    assert await tc.handle("/confirm 000000") == "wrong code; close-all cancelled. Send /closeall again"
    assert await tc.handle("/confirm 123456") == "nothing to confirm; send /closeall first"  # a wrong code used it up
    await tc.handle("/closeall")
    clock.now += 61
    assert await tc.handle("/confirm 123456") == "that code expired; send /closeall again"
    assert engine.commands == []
    await tc.handle("/closeall")
    clock.now += 59
    reply = await tc.handle("/confirm 123456", origin="telegram:owner#9")
    assert reply.startswith("done: closing 2 position(s)")
    assert engine.commands == [(Command.CLOSE_ALL, "telegram:owner#9")]


async def test_other_chats_are_ignored_and_logged(bot: TelegramBot, sink: HttpSink, caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngineClient(candidates=5, positions=1)
    tc = commands(bot, engine, Clock())
    with caplog.at_level(logging.WARNING, logger="hotcoin.telegram"):
        assert await tc.process(update("/closeall", chat=777, user="mallory")) is None
        assert await tc.process(update("/pause", chat=777, update_id=2, user="mallory")) is None
    assert engine.commands == []
    assert sink.requests == []  # not even an answer
    assert tc.ignored == 2
    record = caplog.records[0]
    assert record.getMessage() == "telegram message from an unknown chat ignored"
    assert (record.__dict__["chat_id"], record.__dict__["from"]) == (777, "mallory")


async def test_other_chats_are_journaled_rate_limited(bot: TelegramBot, sink: HttpSink) -> None:
    journal, clock = RecordingSink(), Clock()
    tc = TelegramCommands(bot, OWNER, FakeEngineClient(), clock=clock, journal=journal)
    for i in range(REFUSALS_PER_MINUTE + 3):
        await tc.process(update("/closeall", chat=-100777, update_id=i + 1, user="mallory"))
    assert len(journal.events) == REFUSALS_PER_MINUTE
    first = journal.events[0]
    assert first.kind == "command_refused"
    assert first.ts_ms == int(NOW * 1000)
    assert first.payload == {
        "command": "/closeall", "origin": "telegram:mallory#9", "reason": "unknown chat",
        "chat_id": -100777, "sender_id": 9, "suppressed": 0,
    }  # fmt: skip
    clock.now += 60
    await tc.process(update("/pause", chat=-100777, update_id=99, user="mallory"))
    assert journal.events[-1].payload["suppressed"] == 3
    assert sink.requests == []


async def test_refusals_are_logged_rate_limited(bot: TelegramBot, caplog: pytest.LogCaptureFixture) -> None:
    """A stranger spamming the bot gets as many log lines a minute as journal events, not one
    per message (133 lines in 45 s buried the log); the next line counts those left out."""
    clock = Clock()
    tc = TelegramCommands(bot, OWNER, FakeEngineClient(), clock=clock, allowed_user_ids=frozenset({42}))
    with caplog.at_level(logging.WARNING, logger="hotcoin.telegram"):
        for i in range(REFUSALS_PER_MINUTE + 3):
            await tc.process(update("/closeall", chat=-100777 if i % 2 else OWNER, update_id=i + 1, user="mallory"))
        assert len(caplog.records) == REFUSALS_PER_MINUTE
        assert tc.ignored == REFUSALS_PER_MINUTE + 3
        clock.now += 60
        await tc.process(update("/pause", chat=-100777, update_id=99, user="mallory"))
    assert len(caplog.records) == REFUSALS_PER_MINUTE + 1
    assert [r.__dict__["suppressed"] for r in caplog.records] == [0] * REFUSALS_PER_MINUTE + [3]


async def test_only_allowed_senders_command_in_the_owners_chat(bot: TelegramBot, sink: HttpSink) -> None:
    engine, journal = FakeEngineClient(), RecordingSink()
    tc = TelegramCommands(bot, OWNER, engine, clock=Clock(), journal=journal, allowed_user_ids=frozenset({42}))
    assert await tc.process(update("/pause", user="mallory")) is None  # sender id 9
    assert engine.commands == []
    assert sink.requests == []
    assert journal.events[0].payload["reason"] == "sender not allowed"
    owner = update("/pause", update_id=2)
    owner["message"]["from"] = {"id": 42, "username": "owner"}
    assert await tc.process(owner) is not None
    assert engine.commands == [(Command.PAUSE, "telegram:owner#42")]


async def test_a_group_chat_without_allowed_users_warns_at_start(bot: TelegramBot, caplog: pytest.LogCaptureFixture) -> None:
    tc = TelegramCommands(bot, -100123, FakeEngineClient(), clock=Clock(), poll_timeout_s=0)
    with caplog.at_level(logging.WARNING, logger="hotcoin.telegram"):
        task = asyncio.create_task(tc.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert any("allowed_user_ids is empty" in r.getMessage() for r in caplog.records)


async def test_a_command_delivered_late_is_refused(bot: TelegramBot) -> None:
    engine = FakeEngineClient(candidates=5, positions=1)
    reply = await commands(bot, engine, Clock()).process(update("/pause", date=NOW - 3600))
    assert reply == "ignored /pause: sent 3600 s ago; send it again"
    assert engine.commands == []


async def test_unknown_and_help(bot: TelegramBot) -> None:
    tc = commands(bot, FakeEngineClient(candidates=5, positions=0), Clock())
    assert (await tc.handle("/frobnicate")).startswith("unknown command /frobnicate")
    assert "/closeall" in await tc.handle("/help")
    assert (await tc.handle("hello")).startswith("commands:")
    assert "no open positions" in await tc.handle("/positions")


async def test_an_engine_error_still_gets_an_answer(bot: TelegramBot) -> None:
    engine = FakeEngineClient(candidates=5, positions=0)
    engine.fail_next("send", RuntimeError("engine busy"))
    assert await commands(bot, engine, Clock()).handle("/pause") == "/pause failed: engine busy"


async def test_polling_answers_updates_advances_the_offset_and_backs_off_on_errors(bot: TelegramBot, sink: HttpSink) -> None:
    engine = FakeEngineClient(candidates=5, positions=1)
    clock = Clock()
    tc = TelegramCommands(bot, OWNER, engine, poll_timeout_s=0, clock=clock, sleep=clock.sleep)
    sink.fail(502)
    sink.updates = [update("/pause", update_id=10), update("/status", update_id=11)]
    task = asyncio.create_task(tc.run())
    try:
        await eventually(lambda: len(sink.sent_texts()) == 2)
        await eventually(lambda: any(r.body.get("offset") == 12 for r in sink.requests))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert clock.slept[0] == 2.0  # first getUpdates failure
    assert engine.commands == [(Command.PAUSE, "telegram:owner#9")]
    polls = [r.body for r in sink.requests if r.path.endswith("/getUpdates")]
    assert polls[0] == {"timeout": 0, "allowed_updates": ["message"]}


async def test_a_429_asking_for_an_hour_pauses_polling_a_minute_and_never_zero(bot: TelegramBot, sink: HttpSink) -> None:
    """One getUpdates answered 429 with retry_after=3600 left /pause and /closeall unheard for
    an hour; a retry_after of 0 would poll in a tight loop. Both waits stay within bounds."""
    engine = FakeEngineClient(candidates=5, positions=1)
    clock = Clock()
    tc = TelegramCommands(bot, OWNER, engine, poll_timeout_s=0, clock=clock, sleep=clock.sleep)
    sink.fail(429, parameters={"retry_after": 3600})
    sink.fail(429, parameters={"retry_after": 0})
    sink.updates = [update("/pause", update_id=10)]
    task = asyncio.create_task(tc.run())
    try:
        await eventually(lambda: engine.commands == [(Command.PAUSE, "telegram:owner#9")])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert clock.slept[:2] == [POLL_RETRY_MAX_S, POLL_RETRY_MIN_S]
    assert POLL_RETRY_MAX_S <= 120 and POLL_RETRY_MIN_S > 0


async def test_open_notifications_wires_delivery_commands_and_reports(sink: HttpSink) -> None:
    import time

    from engine.config import load_config
    from engine.ops.notify.service import open_notifications

    env = {
        "HOTCOIN_NOTIFY__TELEGRAM__BOT_TOKEN": TOKEN,
        "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": str(OWNER),
        "HOTCOIN_NOTIFY__TELEGRAM__BASE_URL": sink.base_url,
        "HOTCOIN_NOTIFY__TELEGRAM__POLL_TIMEOUT_S": "5",
    }
    config = load_config(env=env).config
    engine = FakeEngineClient(candidates=5, positions=1)
    async with open_notifications(config, engine, config.journal_path) as bridge:
        assert bridge.on_event("state_change", {"from": "tradeable", "to": "degraded", "reasons": ["data_stale"]})
        await eventually(lambda: "⚠️ Engine tradeable → degraded\ndata_stale" in sink.sent_texts())
        sink.push_update(update("/pause", date=time.time()))
        await eventually(lambda: engine.commands == [(Command.PAUSE, "telegram:owner#9")])
        await eventually(lambda: any(t.startswith("done: ") for t in sink.sent_texts()))
    paths = {p.rsplit("/", 1)[1] for p in sink.paths()}
    assert paths == {"sendMessage", "getUpdates"}


async def test_open_notifications_without_channels_drops_quietly() -> None:
    from engine.config import load_config
    from engine.ops.notify.service import open_notifications

    config = load_config(env={}).config
    async with open_notifications(config, FakeEngineClient(candidates=5, positions=0), config.journal_path) as bridge:
        assert not bridge.on_event("state_change", {"from": "tradeable", "to": "blocked", "reasons": []})


async def test_one_bad_update_does_not_end_polling(bot: TelegramBot, sink: HttpSink) -> None:
    class Flaky(TelegramCommands):
        async def process(self, update: Mapping[str, Any]) -> str | None:
            if update.get("update_id") == 1:
                raise RuntimeError("unexpected shape")
            return await super().process(update)

    engine = FakeEngineClient(candidates=5, positions=0)
    clock = Clock()
    tc = Flaky(bot, OWNER, engine, poll_timeout_s=1, clock=clock, sleep=clock.sleep)
    sink.push_update(update("/pause", update_id=1))
    sink.push_update(update("/resume", update_id=2))
    task = asyncio.create_task(tc.run())
    try:
        await eventually(lambda: engine.commands == [(Command.RESUME, "telegram:owner#9")])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
