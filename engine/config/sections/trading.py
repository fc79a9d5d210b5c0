"""Trading settings: signals, execution, exits, risk and capital.

Every threshold the trading core applies lives here, so a replayed decision can be explained by
the config hash it ran under, and a backtest can sweep any of them without code changes.
Fractions are plain ratios (0.03 = 3 %); durations are milliseconds; money is in the quote asset.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, model_validator

from engine.config.sections.base import Section

# What `ml_min_score = "auto"` means for a model that records no calibrated threshold (one
# registered before calibration existed): the fixed default of those days, with a warning.
UNCALIBRATED_ML_MIN_SCORE = 0.55


def _ml_min_score(value: object) -> float | Literal["auto"]:
    """"auto" or a number in [0, 1] (a TOML number, or its text from a `HOTCOIN_*` variable):
    one message naming both forms, where a plain union reported one error per member."""
    if value == "auto":
        return "auto"
    try:
        number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError('must be "auto" (the model\'s calibrated threshold) or a number from 0 to 1')
    return number


MlMinScore = Annotated[float | Literal["auto"], PlainValidator(_ml_min_score)]

# Where a simulated buy's fee is taken: "base" from the coins bought, "quote" in cash on top.
BuyFeeAsset = Literal["base", "quote"]


def ml_min_score_in_force(setting: float | Literal["auto"], calibrated: float | None) -> float:
    """The `ml_score` rule's threshold: a number in config overrides; "auto" takes the model's
    calibrated threshold, or `UNCALIBRATED_ML_MIN_SCORE` for a model that records none."""
    if setting != "auto":
        return setting
    return UNCALIBRATED_ML_MIN_SCORE if calibrated is None else calibrated


class SignalSettings(Section):
    timeframe: Literal["1m", "3m", "5m", "15m"] = Field(
        "1m", description="Bar length the features and rules work on; signals are computed once per bar."
    )
    regime_symbol: str = Field(
        "BTC/USDT",
        description="Symbol whose bars give the market-regime features (btc_ret_15/60, btc_vol_60). A model "
        "records the one it was trained with, and an engine running with another refuses it; `hotcoin train` "
        "needs this pair's candles in its --data.",
    )
    min_heat: float = Field(
        60.0, ge=0, le=100, description="Entry needs heat >= this (the capital profile may ask for more)."
    )
    min_ret_5: float = Field(
        0.01, description="Momentum confirmation: the 5-bar return must be at least this."
    )
    min_ret_1: float = Field(
        0.0, description="Momentum confirmation: the last bar's return must be at least this (not falling now)."
    )
    min_vol_ratio_20: float = Field(
        1.5, ge=0, description="Volume confirmation: last bar volume over its 20-bar mean must be at least this."
    )
    max_ret_60: float = Field(
        0.30, description="Not-too-extended filter: skip when the 60-bar return is above this (chasing)."
    )
    max_vwap_dist_60: float = Field(
        0.08, description="Not-too-extended filter: skip when close is more than this above the 60-bar VWAP."
    )
    listing_min_bars: int = Field(
        15,
        ge=0,
        le=60,
        description="A new listing has no bars before its first, so its 60-bar (and 20-bar) window features "
        "would stay unknown, and every entry refused, for its first hour, when it moves most. From this many "
        "bars after listing on they are computed over the bars since listing instead (return since the first "
        "close, VWAP and volume mean since listing), and replay says so. 15: the first minutes are the opening "
        "auction's extremes (TKO's first minute traded from 0.10 to 10.00 on 17.7 M volume), which a VWAP or "
        "volume mean over fewer bars would mostly be; 15 bars dilute them while leaving three quarters of the "
        "first hour. 0: never, the windows stay unknown until 60 bars as before. A model records the value "
        "its training features were computed with and the youngest listing it saw; one that saw a listing's "
        "first hour is refused by an engine running with another value (hot_lgbm never has: it is put to no "
        "listing under 61 bars, whose entries the rules decide alone).",
    )
    cooldown_ms: int = Field(
        1_800_000, ge=0, description="After an entry or exit on a symbol, no new entry on it for this long."
    )
    ml_min_score: MlMinScore = Field(
        "auto",
        description="With a production ML scorer, entry needs score >= this. \"auto\": the threshold the model "
        "was calibrated to at training (the score its top 10 % of out-of-sample rows reach); a number overrides it.",
    )
    exit_fade_ret_5: float = Field(
        -0.02, description="Exit signal 'momentum fade': the 5-bar return fell to or below this."
    )
    exit_heat_below: float = Field(
        35.0, ge=0, le=100, description="Exit signal 'heat decay': heat fell below this."
    )
    exit_upper_wick: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Exit signal 'reversal': upper wick is at least this share of the bar range "
        "and the bar closed lower than the previous one.",
    )


class ExecutionSettings(Section):
    entry_order_type: Literal["market", "limit"] = Field(
        "market", description="Entries as MARKET orders, or as LIMIT orders at the ask plus `limit_offset`."
    )
    limit_offset: float = Field(
        0.001, ge=0, le=0.05, description="A LIMIT entry is priced at ask * (1 + this): marketable, bounded."
    )
    limit_expiry_ms: int = Field(
        30_000, ge=1000, description="A LIMIT order still open this long after it was sent is cancelled."
    )
    fee_rate: float = Field(0.001, ge=0, le=0.01, description="Taker fee as a fraction of notional (0.1 %).")
    maker_fee_rate: float = Field(0.001, ge=0, le=0.01, description="Maker fee as a fraction of notional.")
    paper_buy_fee_asset: BuyFeeAsset = Field(
        "base", description=(
            "Paper and backtest fills: the asset a buy's fee is taken in. 'base' (Binance's default"
            " without BNB, and the sim exchange's): the coins bought, so a buy of Q holds Q - fee,"
            " a full exit sells what the lot step allows and the crumbs left are written off as"
            " dust, as live. 'quote': the fee is paid in cash on top and the whole Q is held (close"
            " to paying fees in BNB). A sell's fee is always in the quote asset. Live orders pay"
            " what the exchange charges, whatever this says."
        ),
    )
    slippage_bps: float = Field(
        5.0, ge=0, le=500, description=(
            "Paper fills: market buys at ask + this, sells at bid - this (basis points), whatever"
            " the order's size (no book depth is modelled); a market entry's sizing and cash check"
            " allow for it, live too."
        ),
    )
    max_order_quote: float = Field(
        1000.0, gt=0, description="No single order may be worth more than this in the quote asset."
    )
    reconcile_interval_ms: int = Field(
        15_000, ge=1000, description="How often the exchange broker reconciles its open orders with the exchange."
    )

    @property
    def entry_cost_rate(self) -> float:
        """What an entry may cost beyond its notional at the reference price, as a fraction:
        the taker fee and, for a market entry, the slippage it may fill at (paper buys at ask +
        `slippage_bps`; a live market buy slips too). The cash checks and the reservation use
        it, so an entry never spends cash that is not there (paper cash went negative)."""
        slip = self.slippage_bps / 10_000.0 if self.entry_order_type == "market" else 0.0
        return (1.0 + self.fee_rate) * (1.0 + slip) - 1.0


class TakeProfitTier(Section):
    gain: float = Field(gt=0, description="Take profit when the bid is this far above entry (0.05 = +5 %).")
    fraction: float = Field(
        gt=0, le=1, description="Share of the position's initial quantity sold at this tier (1 = all that is left)."
    )


class ExitSettings(Section):
    stop_loss: float = Field(0.04, gt=0, lt=1, description="Sell everything when the bid is this far below entry.")
    trailing_activation: float = Field(
        0.04, ge=0, description="The trailing stop arms once the bid has been this far above entry."
    )
    trailing_stop: float = Field(
        0.03, gt=0, lt=1, description="Once armed, sell everything when the bid falls this far below its peak."
    )
    take_profit: tuple[TakeProfitTier, ...] = Field(
        (TakeProfitTier(gain=0.05, fraction=0.5), TakeProfitTier(gain=0.10, fraction=1.0)),
        description="Take-profit tiers in rising order of gain; each sells a share of the initial quantity.",
    )
    breakeven_after_tp: bool = Field(
        True, description="After the first take-profit tier, raise the stop to the entry price."
    )
    max_hold_ms: int = Field(
        14_400_000, ge=60_000, description="Sell whatever is left after holding this long (default 4 h)."
    )
    exit_on_signal: bool = Field(True, description="Sell when the exit rules (fade, heat decay, reversal) fire.")

    @model_validator(mode="after")
    def _tiers_rise(self) -> ExitSettings:
        gains = [t.gain for t in self.take_profit]
        if gains != sorted(gains) or len(set(gains)) != len(gains):
            raise ValueError(f"take_profit tiers must have strictly rising gains, got {gains}")
        return self


class RiskSettings(Section):
    daily_loss_limit: float = Field(
        0.03, gt=0, lt=1, description="Daily loss above this share of start-of-day equity pauses new entries."
    )
    level_thresholds: tuple[float, float, float, float] = Field(
        (0.015, 0.03, 0.05, 0.08),
        description="Daily drawdown at which risk level L2, L3, L4, L5 begin. L2 halves sizes, L3 and L4 "
        "stop new entries, L5 asks the state machine for `blocked`.",
    )
    max_consecutive_losses: int = Field(
        3, ge=1, description="This many losing trades in a row raises an alert and starts a cool-down."
    )
    loss_cooldown_ms: int = Field(
        3_600_000, ge=0, description="No new entries for this long after the consecutive-loss guard fires."
    )
    max_exposure: float = Field(
        1.0, gt=0, le=1, description="All open positions together may be worth at most this share of equity."
    )
    max_cluster_exposure: float = Field(
        0.5, gt=0, le=1, description="Positions in one theme/sector cluster may be worth at most this share of equity."
    )
    max_positions_per_cluster: int = Field(2, ge=1, description="At most this many open positions per cluster.")
    max_spread: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="An entry needs the bid/ask spread, (ask - bid) / ask, at most this. A buy pays the ask "
        "while the position is marked and stopped at the bid, so it starts that far down: a spread near "
        "`exits.stop_loss` is a stop-out on the next tick with no price move (a 6 % spread lost 6 % against a "
        "4 % stop). Unset (None): a quarter of `exits.stop_loss` (1 % with the default 4 % stop).",
    )
    clusters: dict[str, str] = Field(
        default_factory=dict,
        description="Symbol -> cluster name (e.g. {'DOGE/USDT': 'meme'}); unmapped symbols are their own cluster.",
    )

    @model_validator(mode="after")
    def _levels_rise(self) -> RiskSettings:
        """Strictly: two levels at one drawdown make the lower one a level that never happens
        ([0.01] * 4 goes from L1 straight to L5, blocked, at a 1 % loss)."""
        lv = list(self.level_thresholds)
        if lv[0] <= 0 or any(b <= a for a, b in itertools.pairwise(lv)):
            raise ValueError(
                f"level_thresholds must be positive and strictly rising (L2 < L3 < L4 < L5), got {lv}; "
                "give each level its own drawdown, e.g. the default [0.015, 0.03, 0.05, 0.08]"
            )
        return self


# `risk.max_spread = None`: this share of the stop loss. The spread is lost the moment a buy
# fills; a quarter of the stop leaves the position three quarters of its stop to move in.
SPREAD_SHARE_OF_STOP = 0.25


def max_spread_in_force(risk: RiskSettings, exits: ExitSettings) -> float:
    """The `spread` entry check's threshold: `risk.max_spread` when set, else a share of the stop loss."""
    return risk.max_spread if risk.max_spread is not None else exits.stop_loss * SPREAD_SHARE_OF_STOP


class CapitalProfile(Section):
    capital: float = Field(gt=0, description="Trading capital in the quote asset.")
    max_concurrent: int = Field(ge=1, description="At most this many positions open at once.")
    min_heat: float = Field(0.0, ge=0, le=100, description="Entry needs heat >= this (on top of signals.min_heat).")
    position_fraction: float | None = Field(
        None, gt=0, le=1, description="Size of one position as a share of equity; None = 1 / max_concurrent."
    )


def _default_profiles() -> dict[str, CapitalProfile]:
    return {
        "starter": CapitalProfile(capital=100.0, max_concurrent=2, min_heat=70.0),
        "growth": CapitalProfile(capital=300.0, max_concurrent=3, min_heat=50.0),
        "full": CapitalProfile(capital=500.0, max_concurrent=5, min_heat=0.0),
    }


class CapitalSettings(Section):
    profile: str = Field("starter", description="Which entry of `profiles` is in force.")
    profiles: dict[str, CapitalProfile] = Field(
        default_factory=_default_profiles,
        description="Staged capital profiles: capital, max concurrent positions, minimum heat. A table for a "
        "built-in profile (starter, growth, full) changes only the keys it sets; a new name needs capital "
        "and max_concurrent.",
    )
    min_order_quote: float = Field(
        6.0, gt=0, description="Entries smaller than this (quote asset) are not worth sending; skip them."
    )

    @model_validator(mode="before")
    @classmethod
    def _over_built_ins(cls, data: Any) -> Any:
        """The given profile tables laid over the built-in profiles, key by key: restating
        `[profiles.starter] capital = 100` must not drop starter's `min_heat = 70` (a default
        of 0 in its place let every lukewarm coin in) nor the growth and full profiles."""
        if not isinstance(data, Mapping) or not isinstance(data.get("profiles"), Mapping):
            return data
        profiles: dict[str, Any] = {name: p.model_dump() for name, p in _default_profiles().items()}
        for name, given in data["profiles"].items():
            built_in = profiles.get(name)
            profiles[name] = {**built_in, **given} if built_in is not None and isinstance(given, Mapping) else given
        return {**data, "profiles": profiles}

    @model_validator(mode="after")
    def _profile_exists(self) -> CapitalSettings:
        if self.profile not in self.profiles:
            raise ValueError(f"capital.profile {self.profile!r} is not one of {sorted(self.profiles)}")
        return self

    @property
    def active(self) -> CapitalProfile:
        return self.profiles[self.profile]


class TradingSection(Section):
    signals: SignalSettings = Field(default_factory=SignalSettings, description="Entry and exit rules.")
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings, description="Orders, fees, slippage.")
    exits: ExitSettings = Field(default_factory=ExitSettings, description="Stops, take-profit tiers, max hold.")
    risk: RiskSettings = Field(default_factory=RiskSettings, description="Portfolio limits and risk levels.")
    capital: CapitalSettings = Field(default_factory=CapitalSettings, description="Capital profile and sizing.")

    @model_validator(mode="after")
    def _spread_under_the_stop(self) -> TradingSection:
        """A buy pays the ask and is marked and stopped at the bid, so it starts the spread
        down: with `risk.max_spread` at or above `exits.stop_loss` an entry the spread check
        lets through may be at its stop already, sold on the next tick with no price move."""
        spread, stop = self.risk.max_spread, self.exits.stop_loss
        if spread is not None and spread >= stop:
            raise ValueError(
                f"trading.risk.max_spread {spread:g} >= trading.exits.stop_loss {stop:g}: an entry at that spread "
                "starts at or past its stop and is sold on the next tick with no price move; lower "
                f"trading.risk.max_spread well under the stop (unset, it is a quarter of it: {stop * SPREAD_SHARE_OF_STOP:g})"
            )
        return self

    @model_validator(mode="after")
    def _an_entry_can_be_sent(self) -> TradingSection:
        """Refuse sizing under which no entry can ever reach `capital.min_order_quote`: such a
        config loaded, ran, and traded nothing, each entry refused `min_order` in the journal
        (capital 50 over 10 positions is 5 a position, under the default minimum of 6)."""
        small = entry_limits_below_minimum(self)
        if small:
            raise ValueError("; also ".join(small))
        return self


def entry_limits_below_minimum(trading: TradingSection) -> list[str]:
    """Each cap on an entry's size that is below `capital.min_order_quote` from the start, with
    its figures and the fix. The allocator (`engine.portfolio.allocator`) sizes an entry as the
    smallest of equity x the position fraction, the room under `risk.max_exposure` and
    `risk.max_cluster_exposure`, the cash less the entry's fees and slippage, and
    `execution.max_order_quote`; the engine starts with equity = cash = the active profile's
    capital, which only a trade can grow. Only the active profile is checked: another one is
    used by nothing until it is chosen, and is checked then. A risk level's size multiplier is
    not counted, as the level passes."""
    capital = trading.capital
    profile, name = capital.active, capital.profile
    minimum = capital.min_order_quote
    key = f"trading.capital.profiles.{name}"
    below = f"< trading.capital.min_order_quote {minimum:g}: no entry can ever be sent"
    out: list[str] = []
    if profile.position_fraction is None:
        per = profile.capital / profile.max_concurrent
        if per < minimum:
            out.append(
                f"profile {name}: {profile.capital:g} / {profile.max_concurrent} = {per:.2f} per position {below}; "
                f"lower {key}.max_concurrent or trading.capital.min_order_quote, or raise {key}.capital"
            )
    elif profile.capital * profile.position_fraction < minimum:
        per = profile.capital * profile.position_fraction
        out.append(
            f"profile {name}: {profile.capital:g} x position_fraction {profile.position_fraction:g} = {per:.2f} per position "
            f"{below}; raise {key}.position_fraction or {key}.capital, or lower trading.capital.min_order_quote"
        )
    for share, setting in ((trading.risk.max_exposure, "max_exposure"), (trading.risk.max_cluster_exposure, "max_cluster_exposure")):
        if profile.capital * share < minimum:
            out.append(
                f"profile {name}: {profile.capital:g} x trading.risk.{setting} {share:g} = {profile.capital * share:.2f} {below}; "
                f"raise trading.risk.{setting} or {key}.capital"
            )
    cost = trading.execution.entry_cost_rate
    if not out and profile.capital / (1.0 + cost) < minimum:  # only where the rest leave the whole capital to one entry
        out.append(
            f"profile {name}: capital {profile.capital:g} less the entry's fee and slippage ({cost:.2%}) = "
            f"{profile.capital / (1.0 + cost):.2f} {below}; raise {key}.capital or lower trading.capital.min_order_quote"
        )
    if trading.execution.max_order_quote < minimum:
        out.append(
            f"trading.execution.max_order_quote {trading.execution.max_order_quote:g} {below}; raise it or lower trading.capital.min_order_quote"
        )
    return out
