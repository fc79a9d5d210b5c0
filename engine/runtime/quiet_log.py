"""Log lines for failures that repeat: about one line per change of state, not one per attempt.

An exchange outage makes every stream redial several times a second and every candle fetch and
broker sync fail. Logged one line each, a 20 s outage of the simulated exchange at x60 wrote 418
lines (272 failed candle fetches, 108 redials, 21 failed syncs), and the lines that said what
happened (the first failure, the recovery) were lost among them. Here:

- `RepeatedFailure` (one source: candle fetches, broker syncs): the first failure is logged,
  what failed and why; while failures of the same kind (`failure_kind`) go on, nothing, but a
  summary at most every `summary_s` wall seconds (how many, for how long, the last text); a
  failure of a kind not seen in this run is logged at once; the first success after failures
  logs the recovery (how long, how many failures). Wall seconds, not the exchange's: the flood
  is a cost to whoever reads the log, at whatever pace the exchange's clock runs.
- `NoticeLog` (the gateway's notices): a stream's first `RECONNECT` is logged, its later ones
  only when the stream fails in a way not seen in this outage, or as a summary every
  `summary_s`; `RECOVERED` ends the outage with how long the stream was down and how many
  redials it took. Every other notice is logged as it comes (they are rare by construction).

Only the lines are collapsed: the counters (the feed's `error_counts`, each stream's
`reconnects`, the state machine's error window) count every failure as before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.market.gateway import GatewayNotice, NoticeKind

SUMMARY_S = 300.0  # wall seconds between "still failing" lines of one run of failures

_QUERY = re.compile(r"\?\S*")
_NUMBER = re.compile(r"\d+")


def failure_kind(text: str) -> str:
    """What makes two failures "the same" for the log: the text with URL query strings and
    numbers blanked, so a klines fetch that failed for another symbol, at another time, on the
    same error is the same kind, and a timeout after a refused connection is a new one."""
    return _NUMBER.sub("#", _QUERY.sub("?", text))


@dataclass(slots=True)
class _Run:
    """One run of failures, from its first to the success (or quiet spell) that ends it."""

    started: float
    logged: float  # wall time of the last line this run wrote
    last: float  # wall time of its latest failure
    kinds: set[str] = field(default_factory=set)
    count: int = 0
    unlogged: int = 0  # failures since the last line


class RepeatedFailure:
    """The log lines of one source of failures (module docstring). `what` heads each line:
    "<what> failed: <why>", "<what> works again ..."."""

    def __init__(
        self, logger: logging.Logger, what: str, *, summary_s: float = SUMMARY_S, wall: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._what = what
        self._summary_s = summary_s
        self._wall = wall
        self._run: _Run | None = None

    def failed(self, text: str) -> None:
        """One failure: logged if it starts a run, is of a new kind, or a summary is due. A run
        with no failure for `summary_s` is over (its source went quiet without a success we
        saw): the next failure starts a new one, and says how many went unlogged before it."""
        now = self._wall()
        kind = failure_kind(text)
        run = self._run
        if run is None or now - run.last >= self._summary_s:
            earlier = "" if run is None or not run.unlogged else f" ({run.unlogged} earlier like it not logged)"
            self._run = _Run(started=now, logged=now, last=now, kinds={kind}, count=1)
            self._log.warning("%s failed: %s%s", self._what, text, earlier)
            return
        run.count += 1
        run.last = now
        if kind not in run.kinds:
            run.kinds.add(kind)
            run.logged, run.unlogged = now, 0
            self._log.warning("%s failed: %s (failing for %.0f wall s, %d failure(s))", self._what, text, now - run.started, run.count)
            return
        run.unlogged += 1
        if now - run.logged >= self._summary_s:
            self._log.warning(
                "%s still failing: %d failure(s) in %.0f wall s, %d since the last line; last: %s",
                self._what, run.count, now - run.started, run.unlogged, text,
            )  # fmt: skip
            run.logged, run.unlogged = now, 0

    def ok(self) -> None:
        """A success: after failures, the recovery line (how long, how many); else nothing. At
        the failures' level: a log read for warnings shows each outage's end beside its start."""
        run, self._run = self._run, None
        if run is not None:
            self._log.warning(
                "%s works again after %.0f wall s of failures (%d in all)", self._what, self._wall() - run.started, run.count
            )


@dataclass(slots=True)
class _Down:
    """A stream's outage as the log saw it: when its first failure was logged, and since."""

    logged: float
    kinds: set[str]
    reconnects: int = 1
    unlogged: int = 0


class NoticeLog:
    """The gateway's notices as log lines, a stream's redials collapsed (module docstring).
    Pass it as the gateway's `notify`."""

    def __init__(
        self, logger: logging.Logger, *, summary_s: float = SUMMARY_S, wall: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._summary_s = summary_s
        self._wall = wall
        self._down: dict[str, _Down] = {}

    def __call__(self, notice: GatewayNotice) -> None:
        if notice.kind is NoticeKind.RECONNECT:
            self._reconnect(notice)
        elif notice.kind is NoticeKind.RECOVERED:
            down = self._down.pop(notice.stream, None)
            unlogged = "" if down is None or not down.unlogged else f", {down.unlogged} of them not logged"
            self._log.warning("exchange %s back: %s%s", notice.stream, notice.detail, unlogged)
        else:
            self._log.warning("exchange %s on %s: %s", notice.kind.value, notice.stream, notice.detail)

    def _reconnect(self, notice: GatewayNotice) -> None:
        now = self._wall()
        kind = failure_kind(notice.detail)
        down = self._down.get(notice.stream)
        if down is None:
            self._down[notice.stream] = _Down(logged=now, kinds={kind})
            self._log.warning(
                "exchange %s down: %s; redialling (logged again when it is back, fails differently, or every %.0f s)",
                notice.stream, notice.detail, self._summary_s,
            )  # fmt: skip
            return
        down.reconnects += 1
        if kind not in down.kinds:
            down.kinds.add(kind)
            down.logged, down.unlogged = now, 0
            self._log.warning("exchange %s still down, now: %s (%d redial(s))", notice.stream, notice.detail, down.reconnects)
            return
        down.unlogged += 1
        if now - down.logged >= self._summary_s:
            self._log.warning(
                "exchange %s still down: %d redial(s) so far; last: %s", notice.stream, down.reconnects, notice.detail
            )
            down.logged, down.unlogged = now, 0
