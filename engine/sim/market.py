"""A generated market of hundreds of symbols, deterministic from a seed.

Each sub-step (`step_ms` of sim time) moves every listed symbol at once:

    dx = beta * f + sigma * sqrt(dt) * exp(h / 2) * z + scheduled offsets

with `f` the BTC factor and `z` Student-t (df 3, unit variance) shocks, plus rare jumps
(about two an hour per symbol, t-sized, a few minutes of volatility each), so returns stay
heavy-tailed at the 1m scale, where sixty summed 1 s shocks alone would look normal, and
correlate through BTC; `h` is a slow AR(1) regime shared by a symbol's
volatility and volume, which clusters both. Volume follows a daily (UTC) profile, rises with
the size of the move, and multiplies during scheduled pumps, dumps and listings
(`engine.sim.scenario`). Trades print on each symbol's tick.

Determinism: the random stream is consumed in a fixed order per sub-step, and the plan is
drawn per sim day from the seed alone, so the same seed and the same sub-steps give the same
market however `advance_to` is called. Before `start_ms`, `history_minutes` of 1m candles are
generated in bulk (one draw a minute, no scheduled moves), so klines and the 24 h stats are
defined from the first tick.

The path is a function of `start_ms`: a market built at another start prices each coin
differently at the same moment. A market that must go on across restarts (the demo's) is
saved and resumed whole (`engine.sim.saved`), never rebuilt.
"""

from __future__ import annotations

import math

import numpy as np

from engine.config.sections.sim import SimSection
from engine.errors import ConfigError, MarketDataError
from engine.sim.base import RingMarket
from engine.sim.rings import MINUTE_MS, FloatArray, IntArray
from engine.sim.scenario import DAY_MS, Listing, ListingEvent, Move, PumpEvent, Scenario
from engine.sim.universe import BTC_ANNUAL_VOL, SymbolParams, per_second, universe

__all__ = ["ListingEvent", "PumpEvent", "SimMarket", "open_market"]

T_DF = 3.0
T_SCALE = 1.0 / math.sqrt(T_DF / (T_DF - 2.0))  # Student-t(3) scaled to unit variance
MEAN_ABS_Z = 2.0 * math.sqrt(T_DF) / math.pi * T_SCALE  # E|z| of that unit-variance t(3)
REGIME_TAU_S = 2 * 3600.0  # volatility/volume regimes last hours
REGIME_STD = 0.6
VOLUME_NOISE = 0.4
VOLUME_NORM = REGIME_STD**2 / 2 + VOLUME_NOISE**2 / 2  # E[exp(h + noise)] = exp(VOLUME_NORM)
PROFILE_AMPLITUDE = 0.3  # intraday volume swing, peaking at 15:00 UTC
PROFILE_PHASE = 2 * math.pi * 15 / 24 - math.pi / 2
STABLE_STD = 1.5e-4  # a stablecoin's typical distance from 1.0
JUMPS_PER_HOUR = 2.0  # idiosyncratic jumps per symbol and hour: what keeps 1m returns fat-tailed
JUMP_SIZE = 3.0  # a jump is t(3)-distributed, this many minutes of the symbol's volatility
WARMUP_CHUNK = 240  # warm-up minutes generated per block (bounded memory at 2,000 symbols)
WICK_SHARE = 0.5  # warm-up highs/lows reach past the body by this share of a minute's volatility


def _profile(t_ms: int) -> float:
    """Intraday volume multiple at `t_ms` (UTC), mean 1."""
    return 1.0 + PROFILE_AMPLITUDE * math.sin(
        2 * math.pi * (t_ms % DAY_MS) / DAY_MS - PROFILE_PHASE
    )


def _profiles(t_ms: IntArray) -> FloatArray:
    out: FloatArray = 1.0 + PROFILE_AMPLITUDE * np.sin(
        2 * np.pi * (t_ms % DAY_MS) / DAY_MS - PROFILE_PHASE
    )
    return out


class SimMarket(RingMarket):
    """The generated market; see the module docstring for the model."""

    def __init__(self, settings: SimSection, start_ms: int) -> None:
        if settings.data_dir is not None:
            raise ConfigError(
                f"sim.data_dir={settings.data_dir} asks for a replay, which SimMarket does not do; "
                "build the market with engine.sim.market.open_market(settings, start_ms)"
            )
        params, used = universe(
            settings.symbols, np.random.default_rng([settings.seed, 1]), settings.quote_asset
        )
        capacity = len(params) + 64
        super().__init__(settings.quote_asset, settings.candle_ring_minutes, start_ms, capacity)
        self._settings = settings
        self._step_ms = settings.step_ms
        dt = settings.step_ms / 1000.0
        self._sqrt_dt = math.sqrt(dt)
        self._dt = dt
        self._phi = math.exp(-dt / REGIME_TAU_S)
        self._h_noise = REGIME_STD * math.sqrt(1.0 - self._phi**2)
        self._factor_sigma = per_second(BTC_ANNUAL_VOL) * self._sqrt_dt * T_SCALE
        self._jump_p = JUMPS_PER_HOUR * dt / 3600.0
        self._jump_scale = JUMP_SIZE * math.sqrt(60.0 / dt) * T_SCALE  # step vol -> minutes of vol
        self._x = np.zeros(capacity)  # log price, off-tick
        self._h = np.zeros(capacity)  # regime
        self._sigma = np.zeros(capacity)  # idiosyncratic volatility per step
        self._beta = np.zeros(capacity)
        self._rate = np.zeros(capacity)  # mean quote volume per step
        self._ticket = np.ones(capacity)
        self._stable = np.array([i for i, p in enumerate(params) if p.pull > 0], np.int64)
        self._stable_pull = min(
            1.0, (params[self._stable[0]].pull if len(self._stable) else 0.0) * dt
        )
        self._t = start_ms  # time of the last sub-step
        self._active: list[Listing | Move] = []
        self._warm_up(params, start_ms)
        pumpable = [p.symbol for p in params if p.pumpable]
        self._scenario = Scenario(settings, start_ms, pumpable, used)

    @property
    def settings(self) -> SimSection:
        """What the market was generated from (`engine.sim.saved` checks a resume against it)."""
        return self._settings

    def script(self, move: Move) -> None:
        """A pump or dump chosen by hand (tests, demos); see `Scenario.script`."""
        if move.activate_ms <= self._t:
            raise ValueError(f"scripted move on {move.symbol} activates at {move.activate_ms}, not after now ({self._t})")
        if move.symbol not in self.symbols:
            raise MarketDataError(f"unknown symbol {move.symbol!r}; script moves on listed symbols")
        self._scenario.script(move)

    # -- the contract ----------------------------------------------------------------------

    def advance_to(self, now_ms: int) -> None:
        """Run every sub-step up to `now_ms` (sub-steps fall on start_ms + k * step_ms)."""
        if now_ms < self._now_ms:
            raise MarketDataError(f"sim time cannot go back: at {self._now_ms}, asked for {now_ms}")
        while self._t + self._step_ms <= now_ms:
            self._step(self._t + self._step_ms)
        self._now_ms = now_ms

    @property
    def ground_truth(self) -> tuple[PumpEvent, ...]:
        """Pumps and dumps planned so far: all that started, and those of the next ~24 h."""
        return self._scenario.ground_truth

    @property
    def listings(self) -> tuple[ListingEvent, ...]:
        """Listings planned so far: those listed, and those of the next ~24 h."""
        return self._scenario.listings

    # -- internals -------------------------------------------------------------------------

    def _not_listed(self, symbol: str) -> str | None:
        listed = self._scenario.listing_ms(symbol)
        return None if listed is None else f"it lists at {listed} (now {self._now_ms})"

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        for name in ("_x", "_h", "_sigma", "_beta", "_rate", "_ticket"):
            old = getattr(self, name)
            wide = np.ones(capacity) if name == "_ticket" else np.zeros(capacity)
            wide[: len(old)] = old
            setattr(self, name, wide)

    def _set_params(self, i: int, p: SymbolParams, price: float) -> None:
        self._x[i] = math.log(price)
        self._sigma[i] = p.sigma * self._sqrt_dt
        self._beta[i] = p.beta
        self._rate[i] = p.daily_quote_volume / 86_400.0 * self._dt / (1.0 + MEAN_ABS_Z)
        self._ticket[i] = p.ticket

    def _step(self, t: int) -> None:
        rings, rng = self._rings, self._noise
        minute = t // MINUTE_MS
        if minute != rings.minute:
            rings.begin_minute(minute, self._price[: rings.n])
        for path in self._scenario.due(t):
            if isinstance(path, Listing):
                self._list_new(path)
            self._active.append(path)
        n = rings.n
        z = rng.standard_t(T_DF, n) * T_SCALE
        f = float(rng.standard_t(T_DF)) * self._factor_sigma
        h = self._h[:n]
        h *= self._phi
        h += self._h_noise * rng.standard_normal(n)
        x = self._x[:n]
        vol = self._sigma[:n] * np.exp(0.5 * h)
        dx = self._beta[:n] * f + vol * z
        jumps = int(rng.binomial(n, self._jump_p))
        if jumps:
            who = rng.integers(0, n, jumps)
            dx[who] += vol[who] * self._jump_scale * rng.standard_t(T_DF, jumps)
        if len(self._stable):
            st = self._stable
            dx[st] -= self._stable_pull * x[st]
        surge = np.ones(n)
        if self._active:
            prev = t - self._step_ms
            for path in self._active:
                i = self._index[path.symbol]
                dx[i] += path.offset(t) - path.offset(prev)
                surge[i] *= path.volume_multiple(t)
            self._active = [p for p in self._active if p.end_ms > t]
        x += dx
        price = self._on_tick(np.exp(x), n)
        self._price[:n] = price
        noise = VOLUME_NOISE * rng.standard_normal(n)
        quote = (
            self._rate[:n]
            * _profile(t)
            * np.exp(h + noise - VOLUME_NORM)
            * (1.0 + np.abs(z))
            * surge
        )
        trades = np.maximum(1.0, np.rint(quote / self._ticket[:n])).astype(np.int32)
        rings.trade(price, quote / price, quote, trades)
        self._t = t

    def _list_new(self, listing: Listing) -> None:
        p = listing.params
        minute = listing.listed_ms // MINUTE_MS
        i = self._list_symbol(p.symbol, p.price, minute, high=p.price * listing.wick)
        self._set_params(i, p, float(self._price[i]))
        self._h[i] = 0.0

    def _warm_up(self, params: list[SymbolParams], start_ms: int) -> None:
        """List the starting symbols and generate their last `history_minutes` of 1m candles."""
        minutes = self._settings.history_minutes
        m0 = start_ms // MINUTE_MS
        self._list_symbols([p.symbol for p in params], [p.price for p in params], m0 - minutes)
        for i, p in enumerate(params):
            self._set_params(i, p, float(self._price[i]))
        self._noise = np.random.default_rng([self._settings.seed, 3])
        n = len(params)
        if minutes:
            self._generate_history(np.random.default_rng([self._settings.seed, 2]), n, minutes, m0)
        self._rings.begin_minute(m0, self._price[:n])

    def _generate_history(self, rng: np.random.Generator, n: int, minutes: int, m0: int) -> None:
        """Minutes m0-minutes .. m0-1, one draw per minute, walked back from today's prices.

        Closes follow the live model at a one-minute step; highs and lows reach past the
        candle's body by a half-normal share of the minute's volatility (where the live path
        prints them sub-step by sub-step). Generated in blocks to bound memory at 2,000 symbols.
        """
        phi_m = math.exp(-60.0 / REGIME_TAU_S)
        h = np.empty((minutes, n))
        h[-1] = REGIME_STD * rng.standard_normal(n)
        for j in range(minutes - 2, -1, -1):
            h[j] = phi_m * h[j + 1] + REGIME_STD * math.sqrt(1 - phi_m**2) * rng.standard_normal(n)
        self._h[:n] = h[-1]
        sigma = self._sigma[:n] / self._sqrt_dt * math.sqrt(60.0)
        beta = self._beta[:n]
        fsig = per_second(BTC_ANNUAL_VOL) * math.sqrt(60.0)
        x_end = self._x[:n].copy()
        shape = (minutes, n)
        c, up, down, abs_z = np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape)
        stable = self._stable
        for end in range(minutes, 0, -WARMUP_CHUNK):
            begin = max(0, end - WARMUP_CHUNK)
            z = rng.standard_normal((end - begin, n))  # sixty summed t(3) sub-steps: near normal
            f = rng.standard_normal(end - begin) * fsig
            scale = sigma * np.exp(0.5 * h[begin:end])
            dx = f[:, None] * beta + scale * z
            jump = rng.random((end - begin, n)) < JUMPS_PER_HOUR / 60.0
            dx[jump] += scale[jump] * (JUMP_SIZE * T_SCALE) * rng.standard_t(T_DF, int(jump.sum()))
            # Closes of the block: walk back from x_end, the close of its last minute.
            back = np.cumsum(dx[::-1], axis=0)[::-1]
            x = x_end - np.vstack([back[1:], np.zeros((1, n))])
            if len(stable):
                x[:, stable] = STABLE_STD * rng.standard_normal((end - begin, len(stable)))
                if end == minutes:
                    x[-1, stable] = x_end[stable]
            x_end = x[0] - dx[0]
            c[begin:end] = np.exp(x)
            wick = WICK_SHARE * np.hypot(scale, beta * fsig)
            up[begin:end] = np.exp(wick * np.abs(rng.standard_normal((end - begin, n))))
            down[begin:end] = np.exp(-wick * np.abs(rng.standard_normal((end - begin, n))))
            abs_z[begin:end] = np.abs(z)
        c = self._on_tick(c, n)
        o = np.vstack(
            [self._on_tick(np.exp(x_end), n)[None], c[:-1]]
        )  # a minute opens at the last close
        hi = self._on_tick(np.maximum(o, c) * up, n)
        lo = self._on_tick(np.minimum(o, c) * down, n)
        times = np.arange(m0 - minutes, m0, dtype=np.int64) * MINUTE_MS
        per_minute = self._rate[:n] * (60.0 / self._dt)
        noise = VOLUME_NOISE * rng.standard_normal(shape)
        quote = (
            per_minute * _profiles(times)[:, None] * np.exp(h + noise - VOLUME_NORM) * (1.0 + abs_z)
        )
        steps_per_minute = MINUTE_MS // self._step_ms
        trades = np.maximum(steps_per_minute, np.rint(quote / self._ticket[:n])).astype(np.int64)
        self._rings.load_history(o, hi, lo, c, quote / c, quote, trades, np.ones(shape, np.bool_))
        self._price[:n] = c[-1]


def open_market(settings: SimSection, start_ms: int) -> RingMarket:
    """The market `settings` asks for: a replay of `data_dir` when set, else a generated one."""
    if settings.data_dir is not None:
        from engine.sim.parquet_source import ParquetMarket

        return ParquetMarket(settings, start_ms)
    return SimMarket(settings, start_ms)
