"""Which symbols may be candidates at all, and why not.

Two kinds of rule:
- *static* rules depend on the symbol alone (quote asset, stablecoin, fiat, leveraged token,
  blacklist); they are decided once, when the symbol gets a row, and kept as a code per row;
- the *market* rule: a market whose status (market info) is not TRADING (a halt, a BREAK) is
  no candidate: nothing trades there, and its last move kept it at the top of the pool for an
  hour. It is kept per row and changes with each market load;
- the *liquidity* rule depends on the 24 h quote volume and the coin's age: at least
  `min_quote_volume_24h`, or `new_listing_liquidity_frac` of it for a coin listed less than
  `new_listing_days` ago (its 24 h figure is still filling up). A pool member failing it
  stays while its volume is within the exit band (`keeps`: at least `liquidity_exit_frac` of
  that minimum): a hot coin whose 24 h figure hovers at the minimum does not flap in and out.
`evaluate` gives a code per row (0 = passes), vectorised; `explain` gives the full list of
checks for one symbol, each as a journal `check()` with the value seen and the limit applied.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.config.sections.discovery import FiltersSection
from engine.domain.market import Market, MarketStatus
from engine.domain.ticker import FloatArray, IntArray
from engine.journal.events import check

CodeArray = npt.NDArray[np.int8]


class FilterCode(enum.IntEnum):
    """Why a symbol is not a candidate (the first rule it fails, in this order)."""

    PASS = 0
    QUOTE_ASSET = 1
    STABLECOIN = 2
    FIAT = 3
    LEVERAGED = 4
    BLACKLIST = 5
    MIN_VOLUME = 6
    LISTING_LIQUIDITY = 7
    NOT_TRADING = 8  # checked before the liquidity rule (the codes' values predate it)

    @property
    def check_name(self) -> str:
        return _CHECK_NAMES[self]


_CHECK_NAMES = {
    FilterCode.PASS: "pass",
    FilterCode.QUOTE_ASSET: "quote_asset",
    FilterCode.STABLECOIN: "not_stablecoin",
    FilterCode.FIAT: "not_fiat",
    FilterCode.LEVERAGED: "not_leveraged_token",
    FilterCode.BLACKLIST: "not_blacklisted",
    FilterCode.MIN_VOLUME: "min_quote_volume_24h",
    FilterCode.LISTING_LIQUIDITY: "new_listing_liquidity",
    FilterCode.NOT_TRADING: "market_trading",
}


def split_symbol(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote


class CandidateFilters:
    """Static rules per row plus the vectorised liquidity rule."""

    def __init__(self, cfg: FiltersSection, quote_asset: str, capacity: int) -> None:
        self.cfg = cfg
        self.quote_asset = quote_asset
        self.static_code = np.zeros(capacity, dtype=np.int8)
        self.known_bases: set[str] = set()
        self._stable = frozenset(s.upper() for s in cfg.stablecoins)
        self._fiat = frozenset(s.upper() for s in cfg.fiat)
        self._blacklist = frozenset(s.upper() for s in cfg.blacklist)
        self._status: dict[str, MarketStatus] = {}  # the last market load's status per symbol
        self.halted = np.zeros(capacity, dtype=bool)  # per row: its market is not TRADING

    def note_bases(self, symbols: Iterable[str]) -> None:
        """Remember base assets that exist, so BTCUP is known to be BTC's leveraged token."""
        for symbol in symbols:
            self.known_bases.add(split_symbol(symbol)[0].upper())

    def note_markets(self, markets: Iterable[Market], index: dict[str, int]) -> None:
        """A market load's status per symbol, onto the rows (`index`: symbol -> row) that hold them."""
        for m in markets:
            self._status[m.symbol] = m.status
            row = index.get(m.symbol)
            if row is not None:
                self.halted[row] = m.status is not MarketStatus.TRADING

    def status(self, symbol: str) -> MarketStatus:
        """The symbol's market status as the last load gave it (TRADING when none did)."""
        return self._status.get(symbol, MarketStatus.TRADING)

    def leveraged_parent(self, base: str) -> str | None:
        for suffix in self.cfg.leveraged_suffixes:
            if base.endswith(suffix) and len(base) > len(suffix):
                parent = base[: -len(suffix)]
                if parent in self.known_bases:
                    return parent
        return None

    def classify(self, symbol: str) -> FilterCode:
        """The static verdict for one symbol."""
        base, quote = split_symbol(symbol.upper())
        if quote != self.quote_asset.upper():
            return FilterCode.QUOTE_ASSET
        if base in self._stable:
            return FilterCode.STABLECOIN
        if base in self._fiat:
            return FilterCode.FIAT
        if self.leveraged_parent(base) is not None:
            return FilterCode.LEVERAGED
        if base in self._blacklist or symbol.upper() in self._blacklist:
            return FilterCode.BLACKLIST
        return FilterCode.PASS

    def on_new_rows(self, rows: IntArray, symbols: list[str | None]) -> None:
        for row in rows.tolist():
            symbol = symbols[row]
            self.static_code[row] = self.classify(symbol) if symbol is not None else FilterCode.QUOTE_ASSET
            self.halted[row] = symbol is not None and self.status(symbol) is not MarketStatus.TRADING

    def volume_threshold(self, age_days: FloatArray) -> FloatArray:
        young = age_days < self.cfg.new_listing_days  # NaN (unknown age) is old
        out: FloatArray = np.where(young, self.cfg.min_quote_volume_24h * self.cfg.new_listing_liquidity_frac, self.cfg.min_quote_volume_24h)
        return out

    def _threshold(self, age_days: float | None) -> tuple[bool, float]:
        """(young, the volume minimum) for one coin of `age_days` (None: unknown, old)."""
        young = age_days is not None and age_days < self.cfg.new_listing_days  # NaN is old too
        return young, self.cfg.min_quote_volume_24h * (self.cfg.new_listing_liquidity_frac if young else 1.0)

    def keeps(self, code: FilterCode, quote_volume_24h: float, age_days: float | None) -> bool:
        """Whether a pool member whose code is `code` stays: it fails the liquidity rule alone
        and its volume is within the exit band (module doc)."""
        if code not in (FilterCode.MIN_VOLUME, FilterCode.LISTING_LIQUIDITY):
            return False
        return quote_volume_24h >= self._threshold(age_days)[1] * self.cfg.liquidity_exit_frac  # NaN: no

    def evaluate(self, quote_volume_24h: FloatArray, age_days: FloatArray) -> CodeArray:
        """Code per row over rows [0, len) of the last axis (one batch, or [batch, row]); static
        codes win over liquidity."""
        e = quote_volume_24h.shape[-1]
        young = age_days < self.cfg.new_listing_days
        # Where no coin is young (nearly every batch of a replay), every threshold and liquidity
        # code is the old coins' one: scalars, not [batch, row] arrays of one value.
        anyone_young = bool(young.any())
        threshold = self.volume_threshold(age_days) if anyone_young else self.cfg.min_quote_volume_24h
        short = ~(quote_volume_24h >= threshold)  # NaN volume fails
        codes = np.empty(short.shape, np.int8)
        codes[...] = self.static_code[:e]
        halted = self.halted[:e]
        if halted.any():
            np.copyto(codes, np.int8(FilterCode.NOT_TRADING), where=halted & (codes == 0))
        liquidity = (
            np.where(young, FilterCode.LISTING_LIQUIDITY, FilterCode.MIN_VOLUME).astype(np.int8)
            if anyone_young else np.int8(FilterCode.MIN_VOLUME)
        )  # fmt: skip
        short &= codes == 0
        np.copyto(codes, liquidity, where=short)
        return codes

    def explain(
        self, symbol: str, quote_volume_24h: float, age_days: float | None, member: bool = False
    ) -> list[dict[str, Any]]:
        """Every check for one symbol, in order, with the value seen and the limit applied; for a
        pool `member` the volume limit is the exit band's (`keeps`)."""
        base, quote = split_symbol(symbol.upper())
        young, threshold = self._threshold(age_days)
        if member:
            threshold *= self.cfg.liquidity_exit_frac
        volume_ok = quote_volume_24h == quote_volume_24h and quote_volume_24h >= threshold  # NaN fails
        parent = self.leveraged_parent(base)
        blacklisted = base in self._blacklist or symbol.upper() in self._blacklist
        status = self.status(symbol)
        return [
            check("quote_asset", quote == self.quote_asset.upper(), quote, self.quote_asset),
            check("not_stablecoin", base not in self._stable, base, "stablecoins"),
            check("not_fiat", base not in self._fiat, base, "fiat"),
            check("not_leveraged_token", parent is None, base, "leveraged_suffixes"),
            check("not_blacklisted", not blacklisted, base, "blacklist"),
            check("market_trading", status is MarketStatus.TRADING, status.value, MarketStatus.TRADING.value),
            check(
                "new_listing_liquidity" if young else "min_quote_volume_24h",
                volume_ok,
                quote_volume_24h if quote_volume_24h == quote_volume_24h else None,
                threshold,
            ),
        ]
