"""Paper trading: the fill model (pure, shared with the backtester) and the async `PaperBroker`.

`FillModel` is the one definition of "what would this order have filled at": market buys at the
ask plus slippage, market sells at the bid minus slippage, a resting limit at its own price once
the book crosses it (maker), a marketable limit like a market order but never past its limit;
fee = notional x rate, a buy's taken in the coins bought by default, as Binance takes it. A
crossed quote (bid over ask) is read at its worse side for the order (`FillModel.book`). The
backtester calls the same `FillModel` with its bar-derived book, so paper and backtest results
differ only by the prices they are fed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from engine.config.sections.trading import BuyFeeAsset, ExecutionSettings
from engine.domain import Fill, Order, OrderIntent, OrderStatus, OrderType, Side, TickerBatch
from engine.errors import NonRetryableOrderError, RetryableOrderError
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.finished import Finished
from engine.execution.order_fsm import fill_delta


@dataclass(frozen=True, slots=True)
class Execution:
    price: float
    fee_quote: float  # the whole fee, valued in the quote asset
    is_maker: bool
    fee_base: float = 0.0  # the part of it taken in the coins bought (`Fill.fee_base`)


@dataclass(frozen=True, slots=True)
class FillModel:
    """Prices and fees of simulated executions. Rates are fractions; slippage in basis points.

    `buy_fee_asset="base"` (the default) takes a buy's fee from the coins bought, as Binance
    does without BNB and as the live broker books it: the position holds Q - fee, a full exit
    sells what the lot step allows and the core writes the crumbs off as dust. With the fee in
    cash instead, paper held Q, sold all of it and ended richer than live on every round trip.

    Limitation: every order fills whole, at the top of the book plus a flat `slippage_bps`,
    whatever its size. A `TickerBatch` carries no bid or ask quantities and a candle no book,
    so there is no depth to walk. On a thin coin, or for an order that is large next to the
    pair's volume, a live market order eats through several levels (or a limit fills partly)
    and pays more than this; paper and backtest results are optimistic there.
    """

    taker_fee_rate: float = 0.001
    maker_fee_rate: float = 0.001
    slippage_bps: float = 5.0
    buy_fee_asset: BuyFeeAsset = "base"

    @classmethod
    def from_settings(cls, settings: ExecutionSettings) -> FillModel:
        return cls(settings.fee_rate, settings.maker_fee_rate, settings.slippage_bps, settings.paper_buy_fee_asset)

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000.0

    @staticmethod
    def book(bid: float, ask: float) -> tuple[float, float] | None:
        """The (bid, ask) an order is filled against, or None where the quote is no price.

        A ticker's bid and ask can come from different moments, and then the bid stands over
        the ask. A real book is never crossed (an offer under a bid trades at once), so one
        of the two sides is stale, and which one is not known. The quote is read at its worse
        side for whoever trades: a sell as if the bid were the lower of the two, a buy as if
        the ask were the higher, i.e. (min, max). Filled at the crossed bid, every exit on such
        a tick sold above the ask, a gain no live order gets; an entry bought under the bid.
        One rule for every order type, so a limit fills on a crossed quote only where both
        sides are through its price, and at no better a price than a book at the worse side
        would give. An uncrossed quote is returned as it is.

        A bid or ask that is not a positive finite number (0, NaN: unknown; infinity) is no
        price at all (`engine.trading._Quotes.get` refuses the same ticks)."""
        if not (0.0 < bid < math.inf and 0.0 < ask < math.inf):
            return None
        return (ask, bid) if bid > ask else (bid, ask)

    def market(self, side: Side, quantity: float, bid: float, ask: float) -> Execution:
        """A market order: buys pay ask + slippage, sells get bid - slippage; taker fee. On a
        crossed quote at its worse side (`book`); with no usable quote, retryable."""
        book = self.book(bid, ask)
        if book is None:
            raise RetryableOrderError(f"no usable book (bid={bid}, ask={ask}); wait for the next ticker")
        bid, ask = book
        price = ask * (1.0 + self.slippage) if side is Side.BUY else bid * (1.0 - self.slippage)
        return self._execution(side, quantity, price, self.taker_fee_rate, is_maker=False)

    def limit(
        self, side: Side, quantity: float, limit: float, bid: float, ask: float, *, resting: bool
    ) -> Execution | None:
        """A limit order against the book, or None if the book does not reach it.

        `resting=False` (just placed): marketable limits fill as takers, capped at the limit.
        `resting=True` (on the book before this quote): fills at its own price as a maker.
        A crossed quote is read at its worse side (`book`): a limit fills on it only where both
        sides reach its price, else it rests (or stays resting) until a quote that does.
        """
        book = self.book(bid, ask)
        if book is None:
            return None
        bid, ask = book
        if side is Side.BUY:
            if ask > limit:
                return None
            price = limit if resting else min(limit, ask * (1.0 + self.slippage))
        else:
            if bid < limit:
                return None
            price = limit if resting else max(limit, bid * (1.0 - self.slippage))
        rate = self.maker_fee_rate if resting else self.taker_fee_rate
        return self._execution(side, quantity, price, rate, is_maker=resting)

    def at(self, side: Side, quantity: float, price: float, *, is_maker: bool) -> Execution:
        """An execution at a price already known (one the broker reported before a restart):
        only its fee, at the maker or taker rate."""
        rate = self.maker_fee_rate if is_maker else self.taker_fee_rate
        return self._execution(side, quantity, price, rate, is_maker=is_maker)

    def _execution(self, side: Side, quantity: float, price: float, rate: float, *, is_maker: bool) -> Execution:
        """The fee is quantity x rate of the asset received: the coins of a buy (valued at the
        fill price in `fee_quote`, as the exchange broker books it), the quote of a sell."""
        fee_base = quantity * rate if side is Side.BUY and self.buy_fee_asset == "base" else 0.0
        return Execution(price, price * quantity * rate, is_maker, fee_base)


class PaperBroker(Broker):
    """Fills intents against the latest book (`update_book`) with `FillModel`; no I/O.

    Order ids are `<id_prefix>-<n>` and trade ids `<id_prefix>-t<n>`, counted from 1 in each
    broker. An engine passes its run id in the prefix: its journal outlives the process, and
    every restart counting from `paper-1` again gave different orders and fills the same ids in
    one journal. A backtest keeps the plain prefix: it journals into a file of its own, and the
    same backtest run twice journals the same ids.

    Only the resting orders are kept for good (until they fill or are cancelled); the others are
    among the last `FINISHED_KEPT` (`engine.execution.finished`), enough to refuse an id sent
    again and to answer the cancel of an order that just filled: a paper engine runs for weeks
    and a backtest places orders by the ten thousand, and every one of them used to stay."""

    def __init__(self, model: FillModel, id_prefix: str = "paper") -> None:
        self.model = model
        self.id_prefix = id_prefix
        self._book: TickerBatch | None = None
        self._index: dict[str, int] | None = None
        self._older: dict[str, tuple[float, float]] = {}  # (bid, ask) of symbols the latest batch lacks
        self._resting: dict[str, Order] = {}  # the open ones, in placement order: sync walks only these
        self._expires: dict[str, int] = {}  # when a resting order expires (its intent's), if ever
        self._finished: Finished[Order] = Finished()  # the others, the last ones only (duplicate ids are refused)
        self._ids = itertools.count(1)
        self._trades = itertools.count(1)
        # `at_rest` answers for this class's own sync, expiries and anomalies (none): a subclass
        # that brings its own (a test's broker whose sync fails) is always asked.
        cls = type(self)
        self._own_sync = (cls.sync, cls.expired, cls.take_anomalies) == (PaperBroker.sync, PaperBroker.expired, Broker.take_anomalies)

    def update_book(self, batch: TickerBatch) -> None:
        """Take a batch's quotes. Binance's `!ticker@arr` carries only the symbols that changed
        in the last second, and a stalled stream gives empty heartbeats: a coin missing from
        this batch keeps its last quote (as the core prices it, and as a live market order
        would fill), kept in `_older` when the batch that had it is replaced by one without.
        Replaced wholesale, a held coin that did not trade that second had no book, and its
        paper exit was refused "no book" (an order error, every retry) where a live one fills."""
        if not len(batch):
            return
        old = self._book
        if old is not None and old.symbols is not batch.symbols and old.symbols != batch.symbols:
            self._older.update(zip(old.symbols, zip(old.bid.tolist(), old.ask.tolist(), strict=True), strict=True))
        self._book = batch
        self._index = None

    def quote(self, symbol: str) -> tuple[float, float]:
        """(bid, ask) of `symbol` in the latest batch that had it; NaNs where none did."""
        if self._book is None:
            return float("nan"), float("nan")
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._book.symbols)}
        i = self._index.get(symbol)
        if i is None:
            return self._older.get(symbol, (float("nan"), float("nan")))
        return float(self._book.bid[i]), float(self._book.ask[i])

    def _fill(self, order: Order, ex: Execution, now_ms: int) -> OrderUpdate:
        qty = order.quantity
        filled = replace(
            order,
            status=OrderStatus.FILLED,
            filled_qty=qty,
            average_price=ex.price,
            fee_quote=ex.fee_quote,
            fee_base=ex.fee_base,
            updated_ms=now_ms,
        )
        self._done(filled)
        return OrderUpdate(filled, (self._trade(order, ex, float(qty), now_ms),))

    def _done(self, order: Order) -> None:
        """`order` rests no more (filled, cancelled, refused): among the last finished."""
        cid = order.client_order_id
        self._resting.pop(cid, None)
        self._expires.pop(cid, None)
        self._finished.add(cid, order)

    def _known(self, client_order_id: str) -> Order | None:
        """A resting order, or one of the last finished; None for one never placed or long finished."""
        resting = self._resting.get(client_order_id)
        return resting if resting is not None else self._finished.get(client_order_id)

    def _trade(self, order: Order, ex: Execution, quantity: float, ts_ms: int) -> Fill:
        """The fill of `quantity` of `order` at `ex`, under this broker's next trade id."""
        return Fill(
            trade_id=f"{self.id_prefix}-t{next(self._trades)}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=ex.price,
            quantity=quantity,
            fee_quote=ex.fee_quote,
            ts_ms=ts_ms,
            trace_id=order.trace_id,
            is_maker=ex.is_maker,
            fee_base=ex.fee_base,
        )

    def settle_reply(self, journaled: Order, replied: Order, *, rested: bool) -> OrderUpdate:
        """Recovery's settlement of an order a broker before the restart replied executed
        (`replied`, from its journaled reply) when only `journaled`'s fills reached the journal:
        that broker died with the process, so its reply is all there is of the order, and the rest
        fills at the reply's price with this model's fee (maker when it `rested` on the book)."""
        qty, price, _ = fill_delta(journaled, replied)
        ex = self.model.at(replied.side, float(qty), price, is_maker=rested)
        settled = replace(
            replied, fee_quote=journaled.fee_quote + ex.fee_quote, fee_base=journaled.fee_base + ex.fee_base, fees_reported=True
        )
        self._done(settled)  # its id stays taken
        if qty <= 0:
            return OrderUpdate(settled)
        return OrderUpdate(settled, (self._trade(settled, ex, float(qty), settled.updated_ms),))

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if self._known(intent.client_order_id) is not None:
            raise NonRetryableOrderError(
                f"duplicate client order id {intent.client_order_id}; an order with it already exists", code=-2010
            )
        order = Order.from_intent(intent, OrderStatus.OPEN, now_ms, f"{self.id_prefix}-{next(self._ids)}")
        bid, ask = self.quote(intent.symbol)
        qty = float(intent.quantity)
        if intent.order_type is OrderType.MARKET:
            if np.isnan(bid) or np.isnan(ask):
                raise RetryableOrderError(f"no book for {intent.symbol} yet; retry after the next ticker")
            return self._fill(order, self.model.market(intent.side, qty, bid, ask), now_ms)
        if intent.price is None:
            raise NonRetryableOrderError(f"limit order {intent.client_order_id} has no price")
        ex = self.model.limit(intent.side, qty, float(intent.price), bid, ask, resting=False)
        if ex is not None:
            return self._fill(order, ex, now_ms)
        self._resting[intent.client_order_id] = order
        if intent.expires_ms is not None:
            self._expires[intent.client_order_id] = intent.expires_ms
        return OrderUpdate(order)

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        order = self._known(client_order_id)
        if order is None:
            raise NonRetryableOrderError(f"unknown order {client_order_id} on {symbol}", code=-2011)
        if order.status.is_terminal:
            return OrderUpdate(order)
        cancelled = replace(order, status=OrderStatus.CANCELED, updated_ms=now_ms)
        self._done(cancelled)
        return OrderUpdate(cancelled)

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        """Resting limits that the book now crosses fill at their price (as makers).

        Walks the resting orders only: a paper engine that runs for weeks (or a month-long
        backtest, which syncs every minute) must not pay for every order it ever placed. Stale
        ones are left to `expired`: the router cancels those after this, so a limit the book
        crosses at its expiry still fills."""
        updates: list[OrderUpdate] = []
        for order in list(self._resting.values()):
            assert order.price is not None  # only priced limits rest (`submit`)
            bid, ask = self.quote(order.symbol)
            ex = self.model.limit(order.side, float(order.quantity), float(order.price), bid, ask, resting=True)
            if ex is not None:
                updates.append(self._fill(order, ex, now_ms))
        return updates

    def at_rest(self) -> bool:
        """No order resting: `sync` and `expired` walk only those, and paper notes no anomaly."""
        return not self._resting and self._own_sync

    def expired(self, now_ms: int) -> list[Order]:
        return [
            order for cid, order in self._resting.items() if (expires := self._expires.get(cid)) is not None and now_ms >= expires
        ]

    async def open_orders(self) -> list[Order]:
        return list(self._resting.values())

