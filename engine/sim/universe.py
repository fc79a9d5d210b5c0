"""Who trades in the generated market, and how each one behaves.

A fixed head that real filters must handle (BTC, ETH, BNB; stablecoins a discovery filter
should reject; leveraged tokens it should reject too), then generated alt coins with prices
spanning 1e-5..~200 USDT, log-uniform volatility and liquidity, and their own beta to BTC.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np

SECONDS_PER_YEAR = 365 * 86_400
BTC_ANNUAL_VOL = 0.7
STABLE_PULL_PER_S = 1 / 600  # a stablecoin's deviation from 1.0 halves in ~7 minutes
_NOT_ALT_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")


def per_second(annual_vol: float) -> float:
    """Volatility per sqrt(second) from an annualised volatility."""
    return annual_vol / math.sqrt(SECONDS_PER_YEAR)


@dataclass(frozen=True, slots=True)
class SymbolParams:
    """One symbol's behaviour. `sigma` is idiosyncratic volatility per sqrt(second), `beta`
    its loading on the BTC factor, `pull` the per-second pull back to 1.0 (stablecoins)."""

    symbol: str
    price: float
    sigma: float
    beta: float
    daily_quote_volume: float
    ticket: float  # mean trade size, quote asset
    kind: str  # "major", "stable", "leveraged", "alt", "listing"
    pull: float = 0.0

    @property
    def pumpable(self) -> bool:
        return self.kind in ("alt", "listing")


def _head(quote: str) -> tuple[SymbolParams, ...]:
    def p(base: str, *args: float | str) -> SymbolParams:
        price, annual, beta, dqv, ticket, kind = args
        pull = STABLE_PULL_PER_S if kind == "stable" else 0.0
        return SymbolParams(
            f"{base}/{quote}",
            float(price),
            per_second(float(annual)),
            float(beta),
            float(dqv),
            float(ticket),
            str(kind),
            pull,
        )

    return (
        p("BTC", 58_000.0, 0.0, 1.0, 2.5e9, 2_000.0, "major"),  # BTC *is* the factor
        p("ETH", 2_400.0, 0.35, 1.1, 1.2e9, 1_200.0, "major"),
        p("BNB", 520.0, 0.45, 0.9, 3e8, 600.0, "major"),
        p("USDC", 1.0, 0.03, 0.0, 4e8, 3_000.0, "stable"),
        p("BUSD", 1.0, 0.03, 0.0, 6e8, 3_000.0, "stable"),
        p("TUSD", 1.0, 0.03, 0.0, 5e7, 1_000.0, "stable"),
        p("BTCUP", 80.0, 0.05, 3.0, 2e7, 150.0, "leveraged"),
        p("BTCDOWN", 0.05, 0.05, -3.0, 1.5e7, 150.0, "leveraged"),
        p("ETHUP", 40.0, 0.3, 3.3, 1e7, 120.0, "leveraged"),
        p("ETHDOWN", 0.5, 0.3, -3.3, 8e6, 120.0, "leveraged"),
    )


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def new_name(rng: np.random.Generator, used: set[str]) -> str:
    """A fresh 3-5 letter base asset, never a stablecoin- or leveraged-token-like name; added to `used`."""
    letters = np.array(list(string.ascii_uppercase))
    while True:
        name = "".join(rng.choice(letters, int(rng.integers(3, 6))))
        if name not in used and not name.startswith("USD") and not name.endswith(_NOT_ALT_SUFFIXES):
            used.add(name)
            return name


def draw_alt(
    rng: np.random.Generator, base: str, quote: str, *, listing: bool = False
) -> SymbolParams:
    """An alt coin's behaviour; new listings are pricier per unit, more volatile and busier."""
    if listing:
        price = _log_uniform(rng, 0.01, 20.0)
        annual = _log_uniform(rng, 1.5, 4.0)
        dqv = _log_uniform(rng, 2e7, 3e8)
    else:
        price = _log_uniform(rng, 1e-5, 200.0)
        annual = _log_uniform(rng, 0.5, 2.5)
        dqv = _log_uniform(rng, 1e5, 3e8)
    return SymbolParams(
        symbol=f"{base}/{quote}",
        price=price,
        sigma=per_second(annual),
        beta=float(rng.uniform(0.4, 1.6)),
        daily_quote_volume=dqv,
        ticket=_log_uniform(rng, 15.0, 300.0),
        kind="listing" if listing else "alt",
    )


def universe(
    count: int, rng: np.random.Generator, quote: str
) -> tuple[list[SymbolParams], set[str]]:
    """The `count` symbols trading at the start, and the set of base names taken."""
    head = list(_head(quote)[:count])
    used = {p.symbol.split("/")[0] for p in _head(quote)}
    alts = [draw_alt(rng, new_name(rng, used), quote) for _ in range(count - len(head))]
    return head + alts, used
