"""Remote control over Telegram: `/status`, `/positions`, `/pause`, `/resume`, `/closeall`.

Only the configured chat is obeyed; a message from any other chat gets no answer, is logged and
is journaled as a `command_refused` event (with its chat and sender ids, so the owner can see
someone is probing the bot). At most `REFUSALS_PER_MINUTE` refusals a minute are journaled, and
as many logged, so a spammer cannot flood the journal or the log; the next one journaled (or
logged) counts those left out (`suppressed`).
With `allowed_user_ids` set, a sender not in it is refused the same way even in the owner's
chat (any member of a group could otherwise pause or close everything); the origin journaled
with a command is `telegram:<username>#<user id>`, the id being what Telegram vouches for. Commands act through an
`EngineClient`, exactly like the TUI's keys: the bot never touches engine state.

`/closeall` is two steps: the bot answers with what would close and a one-time code, and only
`/confirm <code>` within the window sends CLOSE_ALL. A command older than the window when it
arrives (sent while the engine was down, delivered on restart) is refused, not replayed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.journal.events import EventSink
from engine.ops.notify.base import DeliveryError
from engine.ops.notify.telegram import TelegramBot
from engine.runtime.client import Command, EngineClient
from engine.runtime.snapshot import EngineSnapshot

log = logging.getLogger("hotcoin.telegram")

HELP = (
    "/status  engine state, equity, day PnL\n"
    "/positions  open positions\n"
    "/pause  no new entries (exits continue)\n"
    "/resume  allow new entries\n"
    "/closeall  exit every position at market (asks for /confirm <code>)"
)

REFUSALS_PER_MINUTE = 6
# Bounds on the wait after a failed getUpdates. A 429's retry_after counts only up to the cap:
# one answer asking for an hour left /pause and /closeall unheard for that hour. The floor keeps
# a retry_after of 0 (or less) from turning the poller into a tight loop against the Bot API.
POLL_RETRY_MIN_S = 1.0
POLL_RETRY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class _PendingClose:
    code: str
    expires: float
    count: int


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def poll_retry_delay(retry_after: float | None, failures: int) -> float:
    """Seconds to wait after the `failures`-th failed getUpdates in a row: the far end's
    retry_after when it named one, else 2, 4, 8 … s; always within the poll's bounds."""
    asked = retry_after if retry_after is not None else 2.0 ** min(failures, 6)
    return min(POLL_RETRY_MAX_S, max(POLL_RETRY_MIN_S, asked))


class _PerMinute:
    """A fixed one-minute window of at most `limit` events; counts what it turned away."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._window = -1
        self._used = 0
        self.suppressed = 0

    def allow(self, now_s: float) -> bool:
        window = int(now_s // 60)
        if window != self._window:
            self._window, self._used = window, 0
        if self._used >= self._limit:
            self.suppressed += 1
            return False
        self._used += 1
        return True


class TelegramCommands:
    """Answers commands from one chat. `handle()` is the whole logic (tested directly);
    `run()` long-polls `getUpdates` and feeds it until cancelled."""

    def __init__(
        self,
        bot: TelegramBot,
        chat_id: int,
        client: EngineClient,
        *,
        confirm_window_s: float = 60.0,
        poll_timeout_s: int = 25,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        new_code: Callable[[], str] = _new_code,
        journal: EventSink | None = None,
        allowed_user_ids: frozenset[int] = frozenset(),
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._client = client
        self._window = confirm_window_s
        self._poll_timeout_s = poll_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._new_code = new_code
        self._pending: _PendingClose | None = None
        self._offset: int | None = None
        self.ignored = 0  # messages from other chats
        self._journal = journal
        self._refusals = _PerMinute(REFUSALS_PER_MINUTE)
        self._refusal_logs = _PerMinute(REFUSALS_PER_MINUTE)
        self._allowed = allowed_user_ids

    # -- polling ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever (until cancelled); a failing Bot API backs off, never raises."""
        if self._chat_id < 0 and not self._allowed:
            log.warning(
                "telegram chat_id is a group and notify.telegram.allowed_user_ids is empty: any member can command",
                extra={"chat_id": self._chat_id},
            )
        failures = 0
        while True:
            try:
                updates = await self._bot.get_updates(self._offset, self._poll_timeout_s)
            except DeliveryError as exc:
                failures += 1
                delay = poll_retry_delay(exc.retry_after, failures)
                log.warning("telegram getUpdates failed", extra={"error": str(exc), "retry_in_s": delay})
                await self._sleep(delay)
                continue
            failures = 0
            for update in updates:
                try:
                    await self.process(update)
                except Exception:  # one odd update must not end remote control
                    log.exception("telegram update not handled", extra={"update_id": update.get("update_id")})

    async def process(self, update: Mapping[str, Any]) -> str | None:
        """Handle one update (advancing the offset) and send the reply, if any."""
        update_id = update.get("update_id")
        if isinstance(update_id, int):
            self._offset = max(self._offset or 0, update_id + 1)
        message = update.get("message")
        if not isinstance(message, Mapping):
            return None
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, Mapping) else None
        text = message.get("text")
        sender = message.get("from")
        who = "?"
        sender_id = None
        if isinstance(sender, Mapping):
            who = str(sender.get("username") or sender.get("id") or "?")
            sender_id = sender.get("id")
        origin = f"telegram:{who}#{sender_id}"
        if chat_id != self._chat_id:
            self.ignored += 1
            self._log_refusal("telegram message from an unknown chat ignored", {"chat_id": chat_id, "from": who})
            self._journal_refusal(text, origin, "unknown chat", chat_id, sender_id)
            return None
        if self._allowed and sender_id not in self._allowed:
            self.ignored += 1
            self._log_refusal("telegram message from a sender not allowed ignored", {"from": who, "sender_id": sender_id})
            self._journal_refusal(text, origin, "sender not allowed", chat_id, sender_id)
            return None
        if not isinstance(text, str):
            return None
        sent = message.get("date")
        if isinstance(sent, int | float) and self._clock() - sent > self._window:
            first = text.split()[0] if text.split() else "message"
            reply = f"ignored {first}: sent {self._clock() - sent:.0f} s ago; send it again"
        else:
            reply = await self.handle(text, origin=origin)
        try:
            await self._bot.send_message(self._chat_id, reply)
        except DeliveryError as exc:
            log.warning("telegram reply failed", extra={"error": str(exc)})
        return reply

    def _log_refusal(self, msg: str, extra: dict[str, object]) -> None:
        """Log one refused message, unless this minute's allowance is spent: a stranger spamming
        the bot must not bury the log (the next line logged counts those left out)."""
        if not self._refusal_logs.allow(self._clock()):
            return
        log.warning(msg, extra={**extra, "suppressed": self._refusal_logs.suppressed})
        self._refusal_logs.suppressed = 0

    def _journal_refusal(self, text: object, origin: str, reason: str, chat_id: object, sender_id: object) -> None:
        """Journal one refused message, unless this minute's allowance is spent."""
        if self._journal is None:
            return
        now = self._clock()
        if not self._refusals.allow(now):
            return
        words = text.split() if isinstance(text, str) else []
        payload = {
            "command": words[0][:64] if words else "",
            "origin": origin,
            "reason": reason,
            "chat_id": chat_id if isinstance(chat_id, int) else None,
            "sender_id": sender_id if isinstance(sender_id, int) else None,
            "suppressed": self._refusals.suppressed,
        }
        self._refusals.suppressed = 0
        self._journal.emit("command_refused", ts_ms=int(now * 1000), payload=payload)

    # -- commands -----------------------------------------------------------------------------

    async def handle(self, text: str, *, origin: str = "telegram") -> str:
        """The reply to one message from the owner's chat."""
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return "commands:\n" + HELP
        name = words[0][1:].split("@", 1)[0].lower()
        args = words[1:]
        try:
            if name == "status":
                return self._status()
            if name == "positions":
                return self._positions()
            if name == "pause":
                return await self._send(Command.PAUSE, origin)
            if name == "resume":
                return await self._send(Command.RESUME, origin)
            if name == "closeall":
                return self._ask_close_all()
            if name == "confirm":
                return await self._confirm(args, origin)
        except Exception as exc:  # an engine that cannot answer must still get a reply out
            log.exception("telegram command failed", extra={"command": name})
            return f"/{name} failed: {exc}"
        if name in ("help", "start"):
            return HELP
        return f"unknown command /{name}\n{HELP}"

    def _status(self) -> str:
        snap = self._client.latest()
        if snap is None:
            return "engine starting: no cycle completed yet"
        return format_status(snap)

    def _positions(self) -> str:
        snap = self._client.latest()
        if snap is None:
            return "engine starting: no cycle completed yet"
        return format_positions(snap)

    async def _send(self, command: Command, origin: str) -> str:
        result = await self._client.send(command, origin)
        return f"{'done' if result.accepted else 'refused'}: {result.message}"

    def _ask_close_all(self) -> str:
        snap = self._client.latest()
        held = snap.positions if snap is not None else ()
        code = self._new_code()
        self._pending = _PendingClose(code, self._clock() + self._window, len(held))
        listed = ", ".join(p.symbol for p in held[:20]) + (" …" if len(held) > 20 else "")
        what = f"{len(held)} position(s): {listed}" if held else "no open positions (open orders are cancelled)"
        return (
            f"close-all would exit {what} at market and pause new entries.\n"
            f"To go ahead send /confirm {code} within {self._window:.0f} s."
        )

    async def _confirm(self, args: list[str], origin: str) -> str:
        pending, self._pending = self._pending, None
        if pending is None:
            return "nothing to confirm; send /closeall first"
        if self._clock() > pending.expires:
            return "that code expired; send /closeall again"
        if not args or args[0] != pending.code:
            return "wrong code; close-all cancelled. Send /closeall again"
        return await self._send(Command.CLOSE_ALL, origin)


def format_status(snap: EngineSnapshot) -> str:
    st, t = snap.status, snap.totals
    lines = [
        f"{st.state}{' (paused)' if st.paused else ''} · {st.mode} · risk L{st.risk_level}",
        f"equity {t.equity:,.2f} · day PnL {t.day_pnl:+,.2f} · exposure {t.exposure:,.2f}",
        f"{len(snap.positions)} position(s) · {len(snap.candidates)} candidate(s)",
    ]
    if st.reasons:
        lines.append("reasons: " + "; ".join(st.reasons))
    down = [f"{s.name} {s.status}" for s in st.streams if s.status != "connected"]
    if down:
        lines.append("streams: " + ", ".join(down))
    if snap.close_all is not None and not snap.close_all.done:
        lines.append(f"close-all: {snap.close_all.remaining}/{snap.close_all.total} left")
        lines.extend(f"  {why}" for why in snap.close_all.reasons)
    return "\n".join(lines)


def format_positions(snap: EngineSnapshot) -> str:
    if not snap.positions:
        return "no open positions"
    rows = sorted(snap.positions, key=lambda p: p.unrealised_pnl)
    lines = [
        f"{p.symbol} {p.quantity:.8g} @ {p.entry_price:.8g} → {p.mark:.8g} uPnL {p.unrealised_pnl:+,.2f}" for p in rows[:30]
    ]
    if len(rows) > 30:
        lines.append(f"… and {len(rows) - 30} more")
    total = sum(p.unrealised_pnl for p in snap.positions)
    lines.append(f"total uPnL {total:+,.2f}")
    return "\n".join(lines)
