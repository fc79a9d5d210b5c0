"""Which way each journaled check compares its value with its threshold, so replay can say
`50.06 ≤ 100` instead of `value 50.06 threshold 100`.

A check is `{"name", "passed", "value", "threshold"}` (`events.check`), and "value X threshold
Y" left the reader to guess the direction: `precheck:balance` passes with the value under its
threshold, `cash` with it over, and a refusal read "max_concurrent failed: value 1, threshold
1". The direction lives here, by check name, rather than as an "op" key in each check:

- The check dict is part of the journal contract, and every journal already written has no
  op: a reader needs this table for those anyway, and an op written beside it would be a
  second source of truth that could disagree with it.
- The engine's check names are fixed in its code (a few carry a suffix: a cluster, a tier
  number, the `precheck:` prefix) and have meant the same since the first journal, so the
  name says how the check compares, for old journals as for new ones.
- `tests/engine/journal/test_check_conditions.py` walks every `check(...)` call and every
  signal rule in the engine and fails on a name missing here, or on an op that disagrees with
  the comparison the call itself makes: a new check cannot render without its direction.

A name not here (another version's journal, a test double) reads as before, value and
threshold with no direction invented. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

# How a reader reads each op: the condition the check needs to PASS. A check's mark (✔ / ✘)
# then says whether that condition held. Exit rules and exit checks are journaled as
# conditions for *holding* the position (a ✘ is the exit that fired), so they read that way.
_PHRASES: dict[str, str] = {
    "<": "{value} < {threshold}",
    "<=": "{value} ≤ {threshold}",
    ">": "{value} > {threshold}",
    ">=": "{value} ≥ {threshold}",
    "==": "{value} = {threshold}",
    "in": "{value} in {threshold}",
    "not in": "{value} not in {threshold}",
    # precheck:price_positive journals the condition itself ("> 0") as its threshold
    "> 0": "{value} > 0",
    # quote_available: the value is the ask (n/a when no usable bid/ask is known: none, or a
    # broken one such as a crossed book, which its detail names); the threshold is the words
    # "bid/ask > 0"
    "ask > 0": "ask {value} > 0",
    # reversal (an exit rule): the value is the upper wick, the threshold `exit_upper_wick`;
    # it fires on a wick that long on a falling bar
    "no reversal": "not (upper wick {value} ≥ {threshold} on a falling bar)",
    # signal_exit (an exit check): the value is whether exit rules fired, the threshold
    # `exit_on_signal`
    "no signal exit": "not (exit rules fired {value} and exit_on_signal {threshold})",
}

# Check name -> op, for every check the engine journals (grouped by where it is made).
OPS: dict[str, str] = {
    # discovery filters (engine/discovery/filters.py)
    "quote_asset": "==",
    "not_stablecoin": "not in",
    "not_fiat": "not in",
    "not_leveraged_token": "not in",
    "not_blacklisted": "not in",
    "market_trading": "==",
    "min_quote_volume_24h": ">=",
    "new_listing_liquidity": ">=",
    # signal entry rules (engine/signals/rules.py)
    "heat": ">=",
    "momentum_5": ">=",
    "momentum_1": ">=",
    "volume": ">=",
    "not_extended_60": "<=",
    "not_extended_vwap": "<=",
    "cooldown": ">=",
    "ml_score": ">=",
    # signal exit rules: conditions for holding
    "momentum_fade": ">",
    "heat_decay": ">=",
    "reversal": "no reversal",
    # exit checks (engine/portfolio/exits.py): conditions for holding; the value is the bid
    "stop_loss": ">",
    "trailing_stop": ">",
    "max_hold": "<",
    "signal_exit": "no signal exit",
    # the entry gate (engine/trading.py, engine/portfolio/risk.py)
    "engine_state": "==",
    "operator_pause": "==",
    "daily_loss": "<",
    "risk_level": "<=",
    "loss_cooldown": ">=",
    "market_known": "in",
    "quote_available": "ask > 0",
    "spread": "<=",
    # sizing (engine/portfolio/allocator.py)
    "max_concurrent": "<",
    "exposure_room": ">=",
    "cluster_room": ">=",
    "cash": ">=",
    "min_order": ">=",
    # the exchange's filters, balance and size caps (engine/execution/precheck.py), journaled
    # as precheck:NAME
    "precheck:market_active": "==",
    "precheck:order_type": "in",
    "precheck:quantity_positive": ">=",  # the quantity on the step grid: above 0 is at least one step
    "precheck:min_qty": ">=",
    "precheck:max_qty": "<=",
    "precheck:market_min_qty": ">=",
    "precheck:market_max_qty": "<=",
    "precheck:price_positive": "> 0",
    "precheck:min_price": ">=",
    "precheck:max_price": "<=",
    "precheck:percent_price_by_side": "in",
    "precheck:min_notional": ">=",
    "precheck:max_order_size": "<=",
    "precheck:balance": "<=",
    # the scripted engine's discovery filter (engine/runtime/fake_client.py, `hotcoin tui --fake`)
    "min_heat": ">=",
}

# Names that end in a variable part: the cluster (engine/portfolio/clusters.py), the
# take-profit tier (engine/portfolio/exits.py, a condition for holding: bid under the target).
PREFIX_OPS: dict[str, str] = {
    "cluster_count:": "<",
    "cluster_exposure:": "<",
    "take_profit_": "<",
}

# The exchange's filters that a limit of 0 switches off (Binance's "no limit"): `5 ≤ 0 ✔`
# would read wrong, so such a check reads as having no limit.
ZERO_IS_NO_LIMIT = frozenset({
    "precheck:min_qty", "precheck:max_qty", "precheck:market_min_qty", "precheck:market_max_qty",
    "precheck:min_price", "precheck:max_price", "precheck:min_notional",
})  # fmt: skip


def op_of(name: str) -> str | None:
    """The op of a check by its journaled name; None for a name the engine does not make."""
    if name in OPS:
        return OPS[name]
    return next((op for prefix, op in PREFIX_OPS.items() if name.startswith(prefix) and len(name) > len(prefix)), None)


def condition(name: str, op: str | None, value: str, threshold: str, raw_threshold: Any) -> str | None:
    """The condition a check needs to pass, in words, from its value and threshold as already
    shown (`value`, `threshold`); None where the op is unknown. `raw_threshold` tells a limit
    of 0 that switches a filter off."""
    if op is None:
        return None
    limit = _number(raw_threshold)
    if name in ZERO_IS_NO_LIMIT and limit is not None and limit <= 0:
        return f"{value}, no {'minimum' if op.startswith('>') else 'maximum'}"
    return _PHRASES[op].format(value=value, threshold=threshold)


def _number(value: Any) -> float | None:
    """A number, or a number journaled as text (the precheck's Decimals are strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None
