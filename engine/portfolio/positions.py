"""`PositionBook`: open long spot positions, built from fills, with realised PnL fees included.

Accounting rules (the property tests hold these):
- a buy opens or adds (entry price = quantity-weighted average; its fee joins `entry_fees`);
- a sell of q closes q: realised = (exit - entry) x q - exit fee - entry_fees x q / quantity,
  so the entry fees are charged pro rata across partial closes and the realised PnL of all the
  closes of a position adds up to proceeds - cost - every fee;
- `Position.entry_fees` is the entry fee still carried by the quantity held.
Quantities add and subtract as exact decimals of the fills' quantities, so selling "all" never
leaves 1e-17 of a coin behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from engine.domain import Fill, Position, Side
from engine.domain.market import to_decimal
from engine.errors import HotcoinError

WRITE_OFF_REASON = "dust"  # the `reason` of the `position_update` journaled for a `write_off`
MISSING_REASON = "missing_on_exchange"  # the `reason` of the `position_update` journaled for a `write_down`


class PositionError(HotcoinError):
    """A fill that cannot belong to the book as it stands (e.g. a sell of a coin we do not hold)."""


def as_booked(fill: Fill) -> tuple[Fill, float]:
    """The fill as the book holds it, and the cash it moves (negative for a buy).

    A buy's fee taken in coins (`fee_base`: Binance without BNB keeps part of what was bought)
    costs no cash: the book holds only the coins that arrived, at the price paid, with their
    value as the entry fee, so the cost basis (Q - f) x P + f x P = Q x P is exactly the cash
    that left. The core and restart recovery both book through here: a restart rebuilt the full
    quantity and the fee in cash, and every full exit then asked to sell coins that were not there.
    """
    if fill.side is Side.SELL:
        return fill, fill.notional - fill.fee_quote
    paid_fee = max(0.0, fill.fee_quote - fill.fee_base * fill.price)
    held = replace(fill, quantity=_sub(fill.quantity, fill.fee_base)) if fill.fee_base > 0 else fill
    return held, -(fill.notional + paid_fee)


@dataclass(slots=True)
class Holding:
    """A position and what the core needs beside it to manage its exits."""

    position: Position
    initial_qty: float
    exit_legs: int = 0  # exit orders sent so far: the next exit's client id leg is this + 1
    pending_exit: str | None = None  # client id of the exit order in flight, if any
    pending_tier: int | None = None  # take-profit tier that exit order is for (marked hit on its fill)
    opened_seq: int | None = None  # journal seq of the `open` position_update: exit decisions hang off it
    exit_blocked: str | None = None  # why the last exit could not be sent (journaled once, not every tick)
    exit_rules: tuple[str, ...] = ()  # the signal rules behind the latest exit order, if a signal exit
    exit_refusals: int = 0  # exits the exchange refused in a row (non-retryable): the backoff's count
    exit_retry_ms: int = 0  # no exit is decided before this time (the backoff after a refusal)
    exit_refused: str | None = None  # the last refusal, alerted once however often it repeats
    exit_failed: str | None = None  # how the latest exit failed, for the operator; None once one is taken
    locked_alerted: float | None = None  # coins locked on the exchange last alerted (`coins_locked`)
    no_market_alerted: bool = False  # its missing market info was alerted (`no_market`), once while missing


@dataclass(frozen=True, slots=True)
class BookChange:
    """What one fill did to the book, in the shape of a `position_update` event."""

    action: str  # open | add | partial_close | close
    symbol: str
    trace_id: str
    fill_qty: float
    quantity: float  # held after the fill
    entry_price: float
    realised_pnl: float  # of this fill (0 for buys)
    total_realised_pnl: float  # of the position so far
    fee_quote: float


class ExitReasons:
    """Why each position closed, read from its `position_update` events in journal order: its
    last sell's reason, as the backtest's trade log says (docs/backtest.md).

    A full exit sells what the step size allows and the crumbs left are written off in a `close`
    of their own right after it, with reason "dust" (`WRITE_OFF_REASON`). Read alone, that close
    said "dust" for a trade a take-profit ended (`hotcoin report --json`, the "Closed" message).
    A position written off with nothing sold before (all of it dust) did close as dust."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}  # position -> the reason of its latest reduction

    def on_update(self, position: str, action: object, reason: str) -> str | None:
        """Note one `position_update` of `position` (its trace id); for a `close`, the position's
        exit reason (and it is forgotten), else None."""
        if action not in ("partial_close", "close"):
            return None
        if action == "partial_close":
            if reason != WRITE_OFF_REASON:
                self._last[position] = reason
            return None
        last = self._last.pop(position, None)
        return last if reason == WRITE_OFF_REASON and last is not None else reason


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    trace_id: str
    realised_pnl: float
    opened_ms: int
    closed_ms: int
    exit_rules: tuple[str, ...] = ()  # closed by a signal exit: the exit rules that fired


def _sub(a: float, b: float) -> float:
    return float(to_decimal(a) - to_decimal(b))


def _add(a: float, b: float) -> float:
    return float(to_decimal(a) + to_decimal(b))


class PositionBook:
    def __init__(self) -> None:
        self.holdings: dict[str, Holding] = {}
        self.closed: list[ClosedTrade] = []
        # symbol -> coins written off as dust: gone from the book, still on the exchange, so the
        # balance audit counts them as a known excess rather than a fill we missed.
        self.written_off: dict[str, float] = {}

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.holdings

    def __len__(self) -> int:
        return len(self.holdings)

    def get(self, symbol: str) -> Holding | None:
        return self.holdings.get(symbol)

    def positions(self) -> list[Position]:
        return [h.position for h in self.holdings.values()]

    def apply(self, fill: Fill) -> BookChange:
        if fill.quantity <= 0 or fill.price <= 0:
            raise PositionError(f"fill {fill.trade_id}: quantity and price must be positive, got {fill.quantity} @ {fill.price}")
        if fill.side is Side.BUY:
            return self._buy(fill)
        return self._sell(fill)

    def _buy(self, fill: Fill) -> BookChange:
        held = self.holdings.get(fill.symbol)
        if held is None:
            pos = Position(
                symbol=fill.symbol,
                trace_id=fill.trace_id,
                quantity=fill.quantity,
                entry_price=fill.price,
                opened_ms=fill.ts_ms,
                entry_fees=fill.fee_quote,
                # No peak until the first bid marks it (`mark`): the fill is the ask plus
                # slippage, a price no sell could get, and a peak there put a trailing stop
                # armed at entry (`trailing_activation` 0) within a hair of the bid.
                trailing_high=0.0,
            )
            self.holdings[fill.symbol] = Holding(pos, fill.quantity)
            return BookChange("open", fill.symbol, pos.trace_id, fill.quantity, pos.quantity, pos.entry_price, 0.0, 0.0, fill.fee_quote)
        pos = held.position
        qty = _add(pos.quantity, fill.quantity)
        entry = (pos.entry_price * pos.quantity + fill.price * fill.quantity) / qty
        held.position = replace(pos, quantity=qty, entry_price=entry, entry_fees=pos.entry_fees + fill.fee_quote)
        held.initial_qty = _add(held.initial_qty, fill.quantity)
        return BookChange("add", fill.symbol, pos.trace_id, fill.quantity, qty, entry, 0.0, pos.realised_pnl, fill.fee_quote)

    def _sell(self, fill: Fill) -> BookChange:
        held = self.holdings.get(fill.symbol)
        if held is None:
            raise PositionError(f"sell fill {fill.trade_id} on {fill.symbol}, which is not held; reconcile balances")
        pos = held.position
        if Decimal(repr(fill.quantity)) > Decimal(repr(pos.quantity)):
            raise PositionError(
                f"sell fill {fill.trade_id} of {fill.quantity} exceeds the {pos.quantity} held on {fill.symbol}"
            )
        share = fill.quantity / pos.quantity
        fee_share = pos.entry_fees * share
        realised = (fill.price - pos.entry_price) * fill.quantity - fill.fee_quote - fee_share
        qty = _sub(pos.quantity, fill.quantity)
        total = pos.realised_pnl + realised
        if qty <= 0:
            del self.holdings[fill.symbol]
            self.closed.append(ClosedTrade(fill.symbol, pos.trace_id, total, pos.opened_ms, fill.ts_ms, held.exit_rules))
            return BookChange("close", fill.symbol, pos.trace_id, fill.quantity, 0.0, pos.entry_price, realised, total, fill.fee_quote)
        held.position = replace(pos, quantity=qty, entry_fees=pos.entry_fees - fee_share, realised_pnl=total)
        return BookChange(
            "partial_close", fill.symbol, pos.trace_id, fill.quantity, qty, pos.entry_price, realised, total, fill.fee_quote
        )

    def mark(self, symbol: str, bid: float) -> None:
        """Raise the trailing high to `bid` if it is a new peak: the peak is the highest bid
        seen since entry (0 before the first), what the trailing stop falls back from."""
        held = self.holdings.get(symbol)
        if held is not None and bid > held.position.trailing_high:
            held.position = replace(held.position, trailing_high=bid)

    def set_stop(self, symbol: str, stop: float | None, tier_hit: int | None = None) -> None:
        held = self.holdings[symbol]
        tiers = held.position.tp_tiers_hit
        if tier_hit is not None and tier_hit not in tiers:
            tiers = (*tiers, tier_hit)
        held.position = replace(held.position, stop_price=stop, tp_tiers_hit=tiers)

    def write_off(self, symbol: str, now_ms: int) -> BookChange:
        """Drop a remainder too small to sell (below the exchange's minimums), its cost as a loss.

        The trade keeps the signal rules of the exit that left the remainder: a full exit of a
        buy whose fee was taken in coins mostly leaves one, and the trade then closes here, not
        on the exit's fill."""
        held = self.holdings.pop(symbol)
        pos = held.position
        self.written_off[symbol] = _add(self.written_off.get(symbol, 0.0), pos.quantity)
        loss = -(pos.entry_price * pos.quantity) - pos.entry_fees
        total = pos.realised_pnl + loss
        self.closed.append(ClosedTrade(symbol, pos.trace_id, total, pos.opened_ms, now_ms, held.exit_rules))
        return BookChange("close", symbol, pos.trace_id, 0.0, 0.0, pos.entry_price, loss, total, 0.0)

    def write_down(self, symbol: str, missing: float, now_ms: int) -> BookChange:
        """Drop `missing` coins the exchange does not hold (sold outside the engine, or never
        bought), their cost as a loss; the whole position when that is all of it. Unlike
        `write_off`, nothing stays on the exchange, so nothing counts as a known excess."""
        held = self.holdings[symbol]
        pos = held.position
        if missing >= pos.quantity:
            del self.holdings[symbol]
            loss = -(pos.entry_price * pos.quantity) - pos.entry_fees
            total = pos.realised_pnl + loss
            self.closed.append(ClosedTrade(symbol, pos.trace_id, total, pos.opened_ms, now_ms))
            return BookChange("close", symbol, pos.trace_id, pos.quantity, 0.0, pos.entry_price, loss, total, 0.0)
        fee_share = pos.entry_fees * missing / pos.quantity
        loss = -(pos.entry_price * missing) - fee_share
        qty = _sub(pos.quantity, missing)
        total = pos.realised_pnl + loss
        held.position = replace(pos, quantity=qty, entry_fees=pos.entry_fees - fee_share, realised_pnl=total)
        return BookChange("partial_close", symbol, pos.trace_id, missing, qty, pos.entry_price, loss, total, 0.0)

    def exposure(self, marks: dict[str, float]) -> float:
        """Open positions valued at `marks` (entry price where a mark is missing)."""
        return sum(h.position.quantity * marks.get(s, h.position.entry_price) for s, h in self.holdings.items())
