"""CandidateFilters (every rejection with its reason) and CandidatePool (top-N, TTL, snapshots)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import types
from collections.abc import Callable

import numpy as np
import pytest

from engine.config.sections.discovery import FiltersSection, PoolSection
from engine.discovery.filters import CandidateFilters, FilterCode
from engine.discovery.pool import CandidatePool, PoolSnapshot
from engine.domain.discovery import Candidate
from tests.kit.domain import T0, make_candidate


def filters(**kw: object) -> CandidateFilters:
    f = CandidateFilters(FiltersSection(**kw), "USDT", 16)
    f.note_bases(["BTC/USDT", "ETH/USDT", "BNB/USDT"])
    return f


@pytest.mark.parametrize(
    ("symbol", "code"),
    [
        pytest.param("PEPE/USDT", FilterCode.PASS, id="plain-alt"),
        pytest.param("ETH/BTC", FilterCode.QUOTE_ASSET, id="not-quote-asset"),
        pytest.param("USDC/USDT", FilterCode.STABLECOIN, id="stablecoin"),
        pytest.param("FDUSD/USDT", FilterCode.STABLECOIN, id="stablecoin-fdusd"),
        pytest.param("EUR/USDT", FilterCode.FIAT, id="fiat-pair"),
        pytest.param("BTCUP/USDT", FilterCode.LEVERAGED, id="leveraged-up"),
        pytest.param("ETHDOWN/USDT", FilterCode.LEVERAGED, id="leveraged-down"),
        pytest.param("BNBBULL/USDT", FilterCode.LEVERAGED, id="leveraged-bull"),
        pytest.param("ETHBEAR/USDT", FilterCode.LEVERAGED, id="leveraged-bear"),
        pytest.param("JUP/USDT", FilterCode.PASS, id="jup-is-not-leveraged"),
        pytest.param("SYRUP/USDT", FilterCode.PASS, id="syrup-is-not-leveraged"),
        pytest.param("LUNA/USDT", FilterCode.BLACKLIST, id="blacklisted-base"),
        pytest.param("FTT/USDT", FilterCode.BLACKLIST, id="blacklisted-symbol"),
    ],
)
def test_static_rules(symbol: str, code: FilterCode) -> None:
    f = filters(blacklist=("LUNA", "FTT/USDT"))
    assert f.classify(symbol) is code


def test_liquidity_rule_is_looser_for_new_listings() -> None:
    f = filters(min_quote_volume_24h=1e6, new_listing_liquidity_frac=0.1, new_listing_days=1.0)
    qv = np.array([2e6, 5e5, 2e5, 5e4, np.nan])
    age = np.array([np.nan, np.nan, 0.2, 0.2, np.nan])
    codes = f.evaluate(qv, age)
    assert [FilterCode(c) for c in codes] == [
        FilterCode.PASS,
        FilterCode.MIN_VOLUME,
        FilterCode.PASS,  # a 5 h old listing at 20% of the minimum: enough
        FilterCode.LISTING_LIQUIDITY,
        FilterCode.MIN_VOLUME,  # unknown volume fails
    ]


def test_static_code_wins_over_liquidity() -> None:
    f = filters()
    f.on_new_rows(np.array([0, 1]), ["USDC/USDT", "PEPE/USDT"])
    codes = f.evaluate(np.array([1e9, 1.0]), np.array([np.nan, np.nan]))
    assert list(codes) == [FilterCode.STABLECOIN, FilterCode.MIN_VOLUME]


@pytest.mark.parametrize("young", [False, True])
def test_a_block_of_batches_is_coded_as_each_row_one_by_one(young: bool) -> None:
    """`evaluate` over [batch, row] (scalars where no coin is young, no halted-row pass where
    none is halted) gives each row the code its checks in order give it."""
    f = filters(min_quote_volume_24h=1e6, new_listing_liquidity_frac=0.1, new_listing_days=1.0)
    symbols: list[str | None] = ["PEPE/USDT", "USDC/USDT", "SOL/USDT", "DOGE/USDT", "EUR/USDT", "WIF/USDT"]
    f.on_new_rows(np.arange(len(symbols)), symbols)
    rng = np.random.default_rng(7)
    qv = 10 ** rng.uniform(4, 7, (40, len(symbols)))
    qv[rng.random(qv.shape) < 0.1] = np.nan
    age = np.full((40, len(symbols)), np.nan)
    for halted in (False, True):
        f.halted[3] = halted
        if young:
            age[:, 2] = rng.uniform(0, 2, 40)
        codes = f.evaluate(qv, age)
        for k, row in np.ndindex(*qv.shape):
            a = age[k, row]
            expected = FilterCode(int(f.static_code[row]))
            if expected == FilterCode.PASS and f.halted[row]:
                expected = FilterCode.NOT_TRADING
            young_row = a < 1.0
            if expected == FilterCode.PASS and not qv[k, row] >= (1e5 if young_row else 1e6):
                expected = FilterCode.LISTING_LIQUIDITY if young_row else FilterCode.MIN_VOLUME
            assert codes[k, row] == expected, (k, row)
        assert codes.dtype == np.int8


def test_explain_names_each_check_with_value_and_threshold() -> None:
    f = filters(min_quote_volume_24h=1e6)
    checks = {c["name"]: c for c in f.explain("BTCUP/USDT", 5e5, None)}
    assert checks["not_leveraged_token"] == {"name": "not_leveraged_token", "passed": False, "value": "BTCUP", "threshold": "leveraged_suffixes"}
    assert checks["min_quote_volume_24h"] == {"name": "min_quote_volume_24h", "passed": False, "value": 5e5, "threshold": 1e6}
    assert checks["quote_asset"]["passed"] is True
    young = {c["name"]: c for c in f.explain("NEW/USDT", 2e5, 0.1)}
    assert young["new_listing_liquidity"] == {"name": "new_listing_liquidity", "passed": True, "value": 2e5, "threshold": 1e5}
    assert {c["name"]: c for c in f.explain("X/USDT", float("nan"), None)}["min_quote_volume_24h"]["value"] is None


# ----------------------------------------------------------------------------- pool
def pool(**kw: object) -> CandidatePool:
    cfg = {"size": 3, "min_heat": 50.0, "ttl_ms": 60_000, "bar_ms": 60_000, "history_len": 3} | kw
    return CandidatePool(PoolSection(**cfg))


@dataclasses.dataclass(frozen=True)
class Built:
    """A pool's members as the test makes them (`Ranked`): candidates made from their heats."""

    symbols: list[str]
    heats: dict[str, float]
    ts: int

    def build(self) -> tuple[Candidate, ...]:
        return tuple(
            make_candidate(s, heat=self.heats[s], rank=rank, ts_ms=self.ts, returns=types.MappingProxyType({"1m": self.heats[s] / 1000}))
            for rank, s in enumerate(self.symbols, start=1)
        )


def builder(heats: dict[str, float], ts: int = T0) -> Callable[[list[str]], Built]:
    return lambda ranked: Built(ranked, heats, ts)


def test_top_n_by_heat_with_ranks() -> None:
    p = pool()
    heats = {"A": 90.0, "B": 70.0, "C": 80.0, "D": 60.0}
    change = p.update(T0, heats, set(heats), {}, builder(heats))
    assert change.snapshot.symbols == ("A", "C", "B")
    assert [c.rank for c in change.snapshot] == [1, 2, 3]
    assert set(change.entered) == {"A", "B", "C"}


def test_an_idle_empty_pool_moves_as_an_empty_update() -> None:
    a, b = pool(), pool()
    for t in (T0, T0 + 60_000):
        assert a.idle(t) == b.update(t, {}, set(), {}, builder({}))
        assert a.snapshot() == b.snapshot() and a.snapshot().ts_ms == t and not len(a)
    heats = {"A": 90.0}
    a.update(T0 + 120_000, heats, set(heats), {}, builder(heats))
    with pytest.raises(ValueError, match="1 members need update"):
        a.idle(T0 + 180_000)


def test_members_stay_until_ttl_then_expire() -> None:
    p = pool(ttl_ms=60_000)
    heats = {"A": 90.0}
    p.update(T0, heats, {"A"}, {}, builder(heats))
    cooled = {"A": 20.0}
    change = p.update(T0 + 30_000, cooled, set(), {}, builder(cooled))
    assert change.snapshot.symbols == ("A",)
    assert change.snapshot.candidates[0].heat == 20.0  # current figures, not the entry's
    change = p.update(T0 + 60_000, cooled, set(), {}, builder(cooled))
    assert change.snapshot.symbols == ()
    assert change.left == (("A", "expired"),)


@pytest.mark.parametrize(
    ("heats", "rejected", "reason"),
    [
        pytest.param({"A": 90.0}, {"A": "filtered: min_quote_volume_24h"}, "filtered: min_quote_volume_24h", id="filtered"),
        pytest.param({}, {}, "left the market", id="gone"),
    ],
)
def test_members_leave_at_once_when_filtered_or_gone(heats: dict[str, float], rejected: dict[str, str], reason: str) -> None:
    p = pool()
    p.update(T0, {"A": 90.0}, {"A"}, {}, builder({"A": 90.0}))
    change = p.update(T0 + 1000, heats, set(), rejected, builder(heats))
    assert change.left == (("A", reason),)
    assert "A" not in p


def test_hotter_symbols_displace_the_coolest() -> None:
    p = pool(size=2)
    first = {"A": 60.0, "B": 70.0}
    p.update(T0, first, set(first), {}, builder(first))
    second = {"A": 60.0, "B": 70.0, "C": 95.0}
    change = p.update(T0 + 1000, second, {"C"}, {}, builder(second))
    assert change.snapshot.symbols == ("C", "B")
    assert change.left == (("A", "displaced by hotter symbols"),)


def test_snapshots_are_immutable_and_do_not_see_later_updates() -> None:
    p = pool()
    heats = {"A": 90.0}
    held = p.update(T0, heats, {"A"}, {}, builder(heats)).snapshot
    later = {"A": 55.0, "B": 99.0}
    p.update(T0 + 1000, later, set(later), {}, builder(later, T0 + 1000))
    assert held.symbols == ("A",) and held.candidates[0].heat == 90.0
    cand = held.candidates[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cand.heat = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cand.returns["1m"] = 5.0  # type: ignore[index]
    assert isinstance(held.candidates, tuple)


@pytest.mark.parametrize("seed", range(8))
def test_keep_run_is_update_batch_by_batch_where_nobody_is_rejected(seed: int) -> None:
    """`keep_run` (nobody rejected or out of the market, a run of batches at once) gives what
    `update` gives batch by batch: the same batches taken (up to one that would displace a
    member, or one that leaves the pool empty), entrants and leavers of each in order, spans
    of membership, change of the last, snapshot, members' order, expiries and heat history,
    through symbols that enter, cool, expire and come back, heats that tie, and batches
    inside one bar."""
    rng = np.random.default_rng(seed)
    a, b = pool(size=4, ttl_ms=90_000, bar_ms=60_000, history_len=3), pool(size=4, ttl_ms=90_000, bar_ms=60_000, history_len=3)
    kept, now, came, went, cut, back = 0, T0, 0, 0, 0, 0
    for _ in range(150):
        if a.members and rng.random() < 0.7:  # `keep_run`'s case: nobody rejected, everybody in the market
            times = [now + 20_000 * (t + 1) for t in range(int(rng.integers(1, 13)))]
            symbols = sorted(set(a.members) | set(rng.choice(list("ABCDEFG"), int(rng.integers(0, 4))).tolist()))
            heats = {s: [float(rng.choice([40.0, 60.0, 60.0, 75.5, rng.uniform(0, 100)])) for _ in times] for s in symbols}
            qualifies = {s: [h >= 55.0 and rng.random() < 0.8 for h in heats[s]] for s in symbols}
            qualifying = [{s for s in symbols if qualifies[s][t]} for t in range(len(times))]  # one set, both ways
            def rank(t: int, ranked: list[str], times: list[int] = times, heats: dict[str, list[float]] = heats) -> Built:
                return builder({s: heats[s][t] for s in heats}, times[t])(ranked)

            run = a.keep_run(times, heats, qualifies, qualifying.__getitem__, rank)
            n = 0 if run is None else run.count
            for t in range(n):
                present = {s: heats[s][t] for s in symbols}
                other = b.update(times[t], present, qualifying[t], {}, builder(present, times[t]))
                assert run is not None and other.entered == run.entered.get(t, ()) and other.left == run.left.get(t, ())
                assert {s for s, span in run.spans.items() if any(x <= t < y for x, y in span)} == set(b.members)
            if n < len(times):  # batch `n` would hold more than `size`, or the pool is empty after the last taken
                staying = {s for s in b.members if s in qualifying[n] or b.expires_ms(s) > times[n]}
                assert len(staying | qualifying[n]) > 4 or (n and not b.members)
                cut += 1
            if run is not None:
                assert (run.snapshot, ()) == (other.snapshot, ()) and run.snapshot == b.snapshot()
                came, went = came + bool(run.entered), went + bool(run.left)
                back += any(len(span) > 1 for span in run.spans.values())  # left and came back in one run
                kept += n
                now = times[n - 1]
        else:
            now += 20_000
            heats_now = {s: float(rng.choice([40.0, 60.0, 60.0, 75.5, rng.uniform(0, 100)])) for s in "ABCDEF"}
            qualifying_now = {s for s in heats_now if heats_now[s] >= 55.0 and rng.random() < 0.8}
            one = a.update(now, heats_now, qualifying_now, {}, builder(heats_now, now))
            other = b.update(now, heats_now, qualifying_now, {}, builder(heats_now, now))
            assert (one.entered, one.left, one.snapshot) == (other.entered, other.left, other.snapshot)
        assert a.members == b.members
        assert [(a.history(s), a._members[s].expires_ms) for s in a.members] == [(b.history(s), b._members[s].expires_ms) for s in b.members]
    assert kept >= 100 and came and went and cut and back


def test_heat_history_is_one_sample_per_bar_and_bounded() -> None:
    p = pool(history_len=3, bar_ms=60_000, ttl_ms=10**9)
    for k in range(10):  # two batches per bar, five bars
        heats = {"A": 60.0 + k}
        p.update(T0 + k * 30_000, heats, {"A"}, {}, builder(heats))
    hist = p.history("A")
    assert [h for _, h in hist] == [65.0, 67.0, 69.0]  # the bar's latest, last three bars
    assert p.history("nobody") == ()


def test_candidate_type() -> None:
    p = pool()
    heats = {"A": 90.0}
    snap = p.update(T0, heats, {"A"}, {}, builder(heats)).snapshot
    assert isinstance(snap.get("A"), Candidate)
    assert snap.get("Z") is None and len(snap) == 1


def test_a_snapshot_built_on_first_read_is_the_snapshot_of_its_candidates() -> None:
    """`PoolSnapshot.of` (members built when read) and `PoolSnapshot(ts, candidates)` are the
    same snapshot to every reader: equal, hashed, written, pickled and copied alike, frozen,
    its length and symbols read without building it."""
    heats = {"A": 90.0, "B": 70.0}
    built = Built(["A", "B"], heats, T0)
    calls: list[int] = []

    class Counted(Built):
        def build(self) -> tuple[Candidate, ...]:
            calls.append(1)
            return super().build()

    lazy, plain = PoolSnapshot.of(T0, Counted(["A", "B"], heats, T0)), PoolSnapshot(T0, built.build())
    assert len(lazy) == 2 and lazy.symbols == ("A", "B") and not calls
    assert lazy == plain and plain == lazy
    assert repr(lazy) == repr(plain) and [c.rank for c in lazy] == [1, 2] and lazy.get("B") == plain.get("B")
    assert calls == [1]  # built once, then kept
    assert repr(plain) == f"PoolSnapshot(ts_ms={T0}, candidates={built.build()!r})"
    unread = PoolSnapshot.of(T0, built)
    for copied in (pickle.loads(pickle.dumps(unread)), copy.deepcopy(unread), copy.copy(lazy)):
        assert copied.deferred is not None and copied == plain
    assert PoolSnapshot(T0) == PoolSnapshot(ts_ms=T0, candidates=()) and hash(PoolSnapshot(T0)) == hash((T0, ()))
    assert PoolSnapshot(T0) != PoolSnapshot(T0 + 1) and PoolSnapshot(T0) != (T0, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.ts_ms = 0
