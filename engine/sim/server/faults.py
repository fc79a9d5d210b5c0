"""Fault injection: what can go wrong between a client and Binance, on demand.

One `FaultController` per server holds a `FaultPlan` (validated knobs, settable from CLI
flags, from tests through the handle, and over `POST /_sim/faults`) plus the one-shot
counters that the REST middleware consumes ("the next K calls get 429"). WebSocket peers
read the plan on every frame, so a change takes effect immediately.

    REST   latency_ms, 429 bursts (Retry-After), 418 ban for T s, 5xx (non-JSON bodies),
           hangs longer than the client's timeout; all of these strike before the request is
           handled. Lost order replies strike after: the order is placed, then its reply is
           lost (a hang past the client's timeout, a 5xx, or -1007), which Binance documents
           as "execution status unknown". Late orders are placed only later: the reply is
           lost the same ways and the exchange executes the order `late_order_s` after it
           arrived (Binance's backend queue), whatever the client did meanwhile
    KEY    key_cannot_trade: orders and cancels refused with -2015 (HTTP 401) while reads work
    CLOCK  clock_skew_ms: the exchange's clock (its time, every time it stamps and its
           recvWindow check) runs ahead of or behind the client's
    WS     latency_ms, drop every N s (close 1001, or an abrupt TCP abort), duplicated and
           out-of-order messages, half-open (silent and deaf to pings), NaN / malformed
           ticker fields
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class LostReply(enum.StrEnum):
    """How an executed order's lost reply reaches the client."""

    TIMEOUT = "timeout"  # the reply comes hang_s late, after the client gave up
    SERVER_ERROR = "5xx"  # a non-JSON 5xx (the next of server_error_statuses)
    BACKEND_TIMEOUT = "-1007"  # HTTP 503 {"code": -1007}: "Send status unknown; execution status unknown."


class FaultPlan(BaseModel):
    """Every fault knob; zero / None / False means "behave like a healthy Binance"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: int = Field(0, ge=0, le=120_000, description="Added delay on every REST reply and WS frame.")
    drop_ws_every_s: float | None = Field(None, gt=0, description="Drop every WebSocket this often (wall seconds).")
    drop_ws_abrupt: bool = Field(False, description="Drops abort the TCP connection instead of a 1001 close frame.")
    rate_limit_burst: int = Field(0, ge=0, description="The next K REST calls answer HTTP 429 (counts down).")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with 429 and 418.")
    server_errors: int = Field(0, ge=0, description="The next K REST calls answer a non-JSON 5xx (counts down).")
    server_error_statuses: list[Annotated[int, Field(ge=500, le=599)]] = Field(
        default_factory=lambda: [500, 502, 503], min_length=1, description="5xx statuses used in turn."
    )
    hang_requests: int = Field(0, ge=0, description="The next K REST calls hang for hang_s (counts down).")
    hang_s: float = Field(30.0, gt=0, le=600, description="How long a hung REST call waits before answering.")
    lost_order_replies: int = Field(
        0, ge=0, description="The next K orders placed (POST /api/v3/order) are executed, then their reply is "
        "lost as lost_reply_as says (counts down; refused orders do not count)."
    )
    lost_reply_as: LostReply = Field(
        LostReply.BACKEND_TIMEOUT, description="What a lost (or late) order's reply looks like; a late "
        "order's timeout ends in -1007 after hang_s, as the order is not placed yet."
    )
    late_orders: int = Field(
        0, ge=0, description="The next K orders (POST /api/v3/order) are held back: their reply is lost as "
        "lost_reply_as says and the exchange places them late_order_s later, whatever the client does "
        "meanwhile (counts down; orders refused on arrival do not count)."
    )
    late_order_s: float = Field(
        30.0, gt=0, le=3600, description="How long after it arrived a late order is placed (exchange seconds)."
    )
    ticker_nan_rate: float = Field(
        0.0, ge=0, le=1, description="Share of tickers whose bid, ask, high and low are sent as NaN."
    )
    ticker_malformed_rate: float = Field(
        0.0, ge=0, le=1, description="Share of tickers with an unparsable last price and a null high "
        "(ccxt's parser raises on these and drops the whole message)."
    )
    ws_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Share of WS messages sent twice.")
    ws_reorder_rate: float = Field(0.0, ge=0, le=1, description="Share of WS messages held back behind the next.")
    ws_half_open: bool = Field(False, description="WebSockets go silent and stop answering pings.")
    key_cannot_trade: bool = Field(
        False, description="POST and DELETE /api/v3/order answer HTTP 401 -2015 'Invalid API-key, IP, or "
        "permissions for action.' while reads work: a key without trading permission, or an IP not "
        "whitelisted for it."
    )
    clock_skew_ms: int = Field(
        0, ge=-86_400_000, le=86_400_000, description="The exchange's clock runs this far ahead of the "
        "client's (negative: behind): /api/v3/time (and the WS-API time) answer with it, market data, "
        "orders and trades are stamped on it, and signed requests' timestamps are judged against it "
        "(-1021 outside recvWindow), as on an exchange whose clock is not ours. Set mid-run, the "
        "market steps ahead with it (or waits for it, when set back)."
    )


class RestFaultKind(enum.StrEnum):
    BANNED = "banned"  # 418
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx, non-JSON
    HANG = "hang"
    LOST_REPLY = "lost_reply"  # an order executed whose reply was lost
    LATE_ORDER = "late_order"  # an order held back, its reply lost, placed later


@dataclass(frozen=True, slots=True)
class RestFault:
    kind: RestFaultKind
    status: int = 0
    retry_after_s: int = 0
    hang_s: float = 0.0
    banned_until_ms: int = 0


class FaultController:
    """The live fault state of one server. Methods are for tests and the admin endpoint."""

    def __init__(self, plan: FaultPlan | None = None, *, seed: int = 0, wall_ms: Callable[[], int] | None = None):
        self.plan = plan or FaultPlan()
        self.rng = random.Random(seed)
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self.banned_until_ms = 0
        self._status_turn = 0
        self.injected: dict[str, int] = {k.value: 0 for k in RestFaultKind}

    def update(self, changes: dict[str, Any]) -> FaultPlan:
        """Apply named changes atomically; an unknown name or a bad value changes nothing and
        raises ValueError naming the field and the rule it broke. `ban_s` bans for that long."""
        changes = dict(changes)
        ban_s = changes.pop("ban_s", None)
        try:
            merged = FaultPlan.model_validate({**self.plan.model_dump(), **changes})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid fault settings ({problems}); see FaultPlan for the knobs") from None
        if ban_s is not None:
            if not isinstance(ban_s, int | float) or ban_s < 0:
                raise ValueError(f"ban_s must be a number of seconds >= 0, got {ban_s!r}")
            self.ban(float(ban_s))
        self.plan = merged
        return self.plan

    def reset(self) -> None:
        self.plan = FaultPlan()
        self.banned_until_ms = 0

    def rate_limit(self, calls: int) -> None:
        self.plan.rate_limit_burst = calls

    def ban(self, seconds: float) -> None:
        self.banned_until_ms = self._wall_ms() + int(seconds * 1000)

    def fail_with_5xx(self, calls: int, statuses: list[int] | None = None) -> None:
        if statuses is not None:
            self.plan.server_error_statuses = statuses
        self.plan.server_errors = calls

    def hang(self, calls: int, seconds: float | None = None) -> None:
        if seconds is not None:
            self.plan.hang_s = seconds
        self.plan.hang_requests = calls

    def _next_status(self) -> int:
        """The 5xx status for the next server error: server_error_statuses in turn."""
        statuses = self.plan.server_error_statuses
        status = statuses[self._status_turn % len(statuses)]
        self._status_turn += 1
        return status

    def next_rest_fault(self) -> RestFault | None:
        """The fault the next REST call suffers, consuming one unit of its counter."""
        plan = self.plan
        now = self._wall_ms()
        fault: RestFault | None = None
        if now < self.banned_until_ms:
            retry = max(1, (self.banned_until_ms - now + 999) // 1000)
            fault = RestFault(RestFaultKind.BANNED, 418, retry_after_s=retry, banned_until_ms=self.banned_until_ms)
        elif plan.rate_limit_burst > 0:
            plan.rate_limit_burst -= 1
            fault = RestFault(RestFaultKind.RATE_LIMITED, 429, retry_after_s=plan.retry_after_s)
        elif plan.server_errors > 0:
            plan.server_errors -= 1
            fault = RestFault(RestFaultKind.SERVER_ERROR, self._next_status())
        elif plan.hang_requests > 0:
            plan.hang_requests -= 1
            fault = RestFault(RestFaultKind.HANG, hang_s=plan.hang_s)
        if fault is not None:
            self.injected[fault.kind.value] += 1
        return fault

    def lose_order_replies(self, calls: int, as_: LostReply = LostReply.BACKEND_TIMEOUT) -> None:
        self.plan.lost_reply_as = as_
        self.plan.lost_order_replies = calls

    def next_lost_reply(self) -> RestFault | None:
        """The fault that replaces the reply of an order just executed, consuming one unit."""
        plan = self.plan
        if plan.lost_order_replies <= 0:
            return None
        plan.lost_order_replies -= 1
        self.injected[RestFaultKind.LOST_REPLY.value] += 1
        return self._lost_reply()

    def land_orders_late(self, calls: int, after_s: float | None = None, as_: LostReply | None = None) -> None:
        """The next `calls` orders are placed `after_s` exchange seconds late, their reply lost as `as_`."""
        if after_s is not None:
            self.plan.late_order_s = after_s
        if as_ is not None:
            self.plan.lost_reply_as = as_
        self.plan.late_orders = calls

    def next_late_order(self) -> tuple[float, RestFault] | None:
        """(exchange seconds until it is placed, what replaces its reply) for an order that just
        arrived, consuming one unit; None when orders are placed at once."""
        plan = self.plan
        if plan.late_orders <= 0:
            return None
        plan.late_orders -= 1
        self.injected[RestFaultKind.LATE_ORDER.value] += 1
        return plan.late_order_s, self._lost_reply()

    def _lost_reply(self) -> RestFault:
        plan = self.plan
        if plan.lost_reply_as is LostReply.TIMEOUT:
            return RestFault(RestFaultKind.HANG, hang_s=plan.hang_s)
        if plan.lost_reply_as is LostReply.SERVER_ERROR:
            return RestFault(RestFaultKind.SERVER_ERROR, self._next_status())
        return RestFault(RestFaultKind.LOST_REPLY, 503)

    def corrupt_tickers(self, rows: list[dict[str, Any]], nan_keys: tuple[str, ...]) -> None:
        """In place: a share of rows get "NaN" in `nan_keys`, another share an unparsable last
        price `c` ("1.2.3") and a null high `h`.

        ccxt 4.5.90 turns "NaN" in bid/ask/high/low into float nan and delivers it; a bad
        `c` makes its ticker parser raise inside the receive loop, so that whole message is
        lost to a ccxt client (raw clients see it as sent)."""
        nan_rate, bad_rate = self.plan.ticker_nan_rate, self.plan.ticker_malformed_rate
        if nan_rate <= 0 and bad_rate <= 0:
            return
        rng = self.rng
        for row in rows:
            if nan_rate > 0 and rng.random() < nan_rate:
                for key in nan_keys:
                    row[key] = "NaN"
            elif bad_rate > 0 and rng.random() < bad_rate:
                row["c"] = "1.2.3"
                row["h"] = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "plan": self.plan.model_dump(),
            "banned_until_ms": self.banned_until_ms,
            "injected": dict(self.injected),
        }
