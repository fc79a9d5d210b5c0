"""`hotcoin optimize`: walk-forward parameter search with optuna over the real backtest.

The window is cut into `folds` consecutive segments; in each, the first part is in sample
(optuna maximises the backtest's total return there) and the rest out of sample (the best
in-sample parameters are backtested there once, and that figure is what the table reports:
a parameter set is only as good as its out-of-sample result). The base config, unsearched,
is backtested on the same out-of-sample window beside it: a search earns its parameters only
where it beats not searching, and with nine parameters and a few days in sample the in-sample
figure mostly measures the fit (on the real April 2021 month, 30 trials a fold: +40 % in
sample, +2 % out). The best config written is the last fold's (the most recent data): the
base config file, the trading settings HOTCOIN_* variables gave the search, and those
parameters on top, as one TOML file for `--config` that replays the search on its own.

The parent samples every trial (ask) and `jobs` worker processes backtest them, a round of
`jobs` at a time; a round's results are told to the study in trial order, so the same --seed
and --jobs give the same search however the backtests' timings fall. The study lives in an
optuna storage (a temporary SQLite file unless `--storage` names one; any optuna storage URL
works, so several machines can join a study by pointing at the same database, and then each
samples with the others' trials as they land, from a seed of its own: `sampler_seed`). A fold's study is one search: its name holds
the fold's in-sample window (`study_name`: another window is another study), and its
`identity` user attribute digests the candles that window sees, the base config's trading
settings and the search space (`study_identity`); a run whose identity differs is refused rather than
mixed in, so a fold's best trial is always one of its own search.

Every trial is a full `BacktestRunner` run: the same code that trades, with the model
`hotcoin backtest` loads (`walk_forward`'s `model`). A fold's study is filled up to `trials`
complete trials (`_search`): a resumed one searches only what it lacks. The trials of a fold
differ only in trading settings, so discovery (which reads the market alone) and the replay
market itself run in each worker's first trial and are replayed to its later ones
(`engine.backtest.reuse`: a later trial of three real days takes 1.0 s instead of 8.4 s); the
core, signals, risk, router and paper broker run in every trial.

Parameters (dotted config keys; `SPACE`, as `search_space` fits it to the base config):
    trading.signals.min_heat                 heat entry threshold (from the capital profile's up)
    trading.exits.max_hold_ms                holding time
    trading.exits.take_profit                tiers: tp1 gain and share, tp2 gain
    trading.exits.stop_loss, trading.exits.trailing_stop
    trading.signals.exit_fade_ret_5          signal exit 'momentum fade' (5-bar return at or below)
    trading.signals.exit_upper_wick          signal exit 'reversal' (upper wick share of the bar)

The two signal exits close most positions with the default settings (a 2 % dip over five
minutes is common inside a pump), so they are searched with the rest. An entry needs heat at
or above both `trading.signals.min_heat` and the active capital profile's `min_heat`, so
min_heat is searched from the profile's threshold up (`search_space`): below it every value
trades alike (starter's 70 made 40 to 70 one result), and a best value there would name a
threshold that never applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from engine.backtest.history import HistoryIndex, index_history
from engine.backtest.reuse import WindowReuse
from engine.backtest.runner import MINUTE_MS, BacktestRunner, window
from engine.config import HotcoinConfig, deep_update, dotted_get, dotted_set
from engine.errors import ConfigError
from engine.signals.scorer import ModelLoad

# name -> (low, high, step); integers where step is an int.
SPACE: dict[str, tuple[float, float, float]] = {
    "min_heat": (40.0, 90.0, 5.0),
    "max_hold_min": (30, 480, 30),
    "tp1_gain": (0.02, 0.10, 0.01),
    "tp1_fraction": (0.25, 1.0, 0.25),
    "tp2_extra": (0.02, 0.20, 0.02),
    "stop_loss": (0.02, 0.08, 0.01),
    "trailing_stop": (0.01, 0.06, 0.01),
    "exit_fade_ret_5": (-0.08, -0.01, 0.01),
    "exit_upper_wick": (0.4, 1.0, 0.1),
}


@dataclass(frozen=True, slots=True)
class OptimizeProgress:
    """Where a walk-forward search stands, for a progress bar (a search runs for many minutes).

    Reported as a fold starts, after every trial told to the study (a round of `jobs` trials
    is told together once its slowest is back), and as the fold's out-of-sample backtest
    starts (`done == trials` then)."""

    fold: int  # 1-based
    folds: int
    done: int  # trials finished in this run, this fold
    trials: int  # trials this run asks for, this fold: those its study lacks (`_search`)
    best: float | None  # best in-sample return of the fold's study so far
    out_of_sample: bool = False


SAMPLER_SEED_MAX = 2**32 - 1  # numpy's RandomState, under optuna's TPESampler, takes 0 to this


@dataclass(frozen=True, slots=True)
class OptimizePlan:
    data_dir: Path
    start_ms: int | None
    end_ms: int | None
    trials: int
    jobs: int
    folds: int
    oos_fraction: float
    storage: str | None = None
    study: str = "hotcoin"
    seed: int = 7

    def __post_init__(self) -> None:
        """Refuse a seed no fold's sampler can take, before any candle is read: fold k (from 1)
        samples from `seed + k - 1` (`sampler_seed`) and optuna's TPESampler takes 0 to 2**32 - 1,
        so `--seed -5` or `--seed 4294967296` failed only once the data was loaded, with
        optuna's own words. The same range holds with `--storage` (whose seed is mixed with a
        random number), so one --seed is good for both."""
        top = SAMPLER_SEED_MAX - (self.folds - 1)
        if not 0 <= self.seed <= top:
            raise ConfigError(
                f"--seed {self.seed} is out of range: give 0 to {top} (each of the {self.folds} fold(s) samples "
                f"from --seed plus its index, and the sampler takes seeds up to 2**32 - 1)"
            )


@dataclass(frozen=True, slots=True)
class Fold:
    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int
    params: dict[str, float]
    is_return: float
    oos_return: float
    oos_trades: int
    trials: int  # complete trials in the fold's study (a failed or interrupted one is no trial of the search)
    base_oos_return: float  # the base config, unsearched, on the same out-of-sample window
    base_oos_trades: int
    is_trades: int  # the best trial's, in sample: a best return from two trades is luck more than skill
    study: str  # the fold's optuna study (`study_name`), to resume or inspect it in a shared --storage
    traded_trials: int  # trials that made a trade in sample: with none, every trial returned 0 and nothing was searched

    @property
    def beats_base(self) -> bool:
        return self.oos_return > self.base_oos_return


@dataclass
class OptimizeResult:
    folds: list[Fold] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the search space was fitted to the config
    model: str | None = None  # the model every backtest of the search ran with (`model_label`); None: rules alone
    model_mode: str = "off"  # its mode: production (gates entries), shadow (scores, never trades) or off

    @property
    def best(self) -> Fold:
        return self.folds[-1]

    @property
    def warning(self) -> str | None:
        """What the owner must know before trading the best config: the last fold's parameters
        are written whatever that fold found, and where no trial traded in sample there every
        trial returned 0 and the "best" is the first one asked, never tried. Said beside the
        "written to" line (and in --json), not only in the verdict under the table."""
        if not self.folds or self.best.traded_trials:
            return None
        return (
            f"fold {self.best.index}, whose parameters are written, searched nothing: no trial traded in sample, so "
            "they are the first trial's, never tried; do not trade them as searched ones. Search a longer window, or "
            "with more --trials"
        )


def model_label(model: ModelLoad | None) -> tuple[str | None, str]:
    """(name, mode) of the model a search's backtests run with; (None, "off") on the rules alone
    (none registered, or one that was refused: `ModelLoad.scorer` is None)."""
    if model is None or model.scorer is None:
        return None, "off"
    return model.model, model.mode


def model_line(result: OptimizeResult) -> str:
    """One line saying which model the search traded with: a search on the rules alone and one
    with a production model gating entries are different searches, and best.toml's figures
    hold only for the one it ran with."""
    if result.model is None:
        return "model: none; every backtest of the search ran on the rules alone"
    return f"model: {result.model} ({result.model_mode}); every backtest of the search ran with it, as `hotcoin backtest` does"


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP, which the command raises as Ctrl-C) during a search, with what
    it had finished: the folds done (`result`), the fold it stopped in, and the `--storage` URL
    that keeps the trials told so far (None: a temporary one, removed). Every trial asked was
    told (FAIL where it had not finished) and the worker processes stopped before it is raised."""

    def __init__(self, result: OptimizeResult, fold: int, folds: int, storage: str | None) -> None:
        super().__init__(f"interrupted in fold {fold} of {folds}")
        self.result, self.fold, self.folds, self.storage = result, fold, folds, storage


def overrides(params: dict[str, float]) -> dict[str, Any]:
    """Trial parameters as a nested config overlay."""
    tp1 = float(params["tp1_gain"])
    signals: dict[str, float] = {"min_heat": float(params["min_heat"])}
    for name in ("exit_fade_ret_5", "exit_upper_wick"):  # absent from a study stored before they were searched
        if name in params:
            signals[name] = round(float(params[name]), 6)
    return {
        "trading": {
            "signals": signals,
            "exits": {
                "max_hold_ms": int(params["max_hold_min"]) * MINUTE_MS,
                "take_profit": [
                    {"gain": round(tp1, 6), "fraction": float(params["tp1_fraction"])},
                    {"gain": round(tp1 + float(params["tp2_extra"]), 6), "fraction": 1.0},
                ],
                "stop_loss": float(params["stop_loss"]),
                "trailing_stop": float(params["trailing_stop"]),
            },
        }
    }


def apply(config: HotcoinConfig, params: dict[str, float]) -> HotcoinConfig:
    merged = config.model_dump(mode="python")
    deep_update(merged, overrides(params))
    return HotcoinConfig.model_validate(merged)


def backtest_return(
    config: HotcoinConfig, data_dir: Path, start: int, end: int, *, reuse: WindowReuse | None = None,
    run_id: str | None = None, model: ModelLoad | None = None,
) -> tuple[float, int]:
    """(total return, closed trades) of one backtest, journaling off; `reuse` hands a trial the
    discovery an earlier trial of the same window recorded (`engine.backtest.reuse`); `model`
    is the registry's model as `hotcoin backtest` loads it (`ml.runtime.load_scorer`): a
    production model gates entries, so a search without it reported figures that a backtest of
    its best config did not give."""
    result = asyncio.run(BacktestRunner(config, data_dir, run_id=run_id, reuse=reuse, model=model).run(start, end))
    return result.final_equity / result.initial_equity - 1.0, len(result.trades)


def search_space(config: HotcoinConfig) -> dict[str, tuple[float, float, float]]:
    """`SPACE` fitted to the config. min_heat starts at the active capital profile's threshold
    where that is higher: entry takes the higher of the two (`TradingCore.on_candidates`), so
    below it a searched value changes nothing. The range keeps its step from the profile's value
    up (a profile above the top searches that one value). stop_loss starts at the first grid
    point above a set `risk.max_spread`, which the config refuses at or above the stop (a trial
    there would be refused mid-search); none above it: the config's own stop alone."""
    space = dict(SPACE)
    floor = config.trading.capital.active.min_heat
    lo, hi, step = SPACE["min_heat"]
    if floor > lo:
        space["min_heat"] = (floor, floor + step * max(0, (hi - floor) // step), step)
    spread = config.trading.risk.max_spread
    lo, hi, step = SPACE["stop_loss"]
    if spread is not None and spread >= lo:
        first = _on_grid(lo + step * (math.floor((spread - lo) / step + 1e-9) + 1))
        own = config.trading.exits.stop_loss
        space["stop_loss"] = (first, hi, step) if first <= hi + 1e-12 else (own, own, step)
    return space


def space_notes(config: HotcoinConfig) -> list[str]:
    """What the output says about a space `search_space` fitted to the config."""
    space = search_space(config)
    notes = []
    if space["min_heat"] != SPACE["min_heat"]:
        lo, hi, _ = space["min_heat"]
        cap = config.trading.capital
        notes.append(
            f"min_heat searched {lo:g} to {hi:g}, not {SPACE['min_heat'][0]:g} to {SPACE['min_heat'][1]:g}: the capital "
            f"profile {cap.profile!r} enters only at heat >= {lo:g} (trading.capital.profiles.{cap.profile}.min_heat), "
            "so a lower threshold would change nothing; lower that to search below it"
        )
    if space["stop_loss"] != SPACE["stop_loss"]:
        lo, hi, _ = space["stop_loss"]
        notes.append(
            f"stop_loss searched {lo:g} to {hi:g}, not {SPACE['stop_loss'][0]:g} to {SPACE['stop_loss'][1]:g}: a stop "
            f"must be above trading.risk.max_spread {config.trading.risk.max_spread:g}; lower that to search below it"
        )
    return notes


def _suggest(trial: Any, space: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, (lo, hi, step) in space.items():
        if isinstance(step, int):
            out[name] = trial.suggest_int(name, int(lo), int(hi), step=step)
        else:
            out[name] = _on_grid(trial.suggest_float(name, lo, hi, step=step))
    return out


def _on_grid(value: float) -> float:
    """A stepped float as its grid point reads (0.2, not optuna's 0.19999999999999998): the
    trial runs, the table, `--json` and the best config's TOML all carry the same number."""
    return float(f"{value:.10g}")


@dataclass(slots=True)
class _Process:
    """What a process's trials share: its recordings of the fold's window (a worker's first trial
    records discovery and the market, its later trials replay them) and the search's model."""

    reuse: WindowReuse
    model: ModelLoad | None


_WORKER: list[_Process] = []  # a worker process's own, set as it starts (`_start_worker`)


def _start_worker(model: ModelLoad | None) -> None:
    """A pool worker's start: the search's model, handed over once (pickled where the start
    method is not fork: a LightGBM booster pickles as its model text) rather than sent with
    every trial, and the signals left to the parent. Ctrl-C reaches the whole process group:
    the parent stops the search and terminates its workers, which ignore it rather than each
    print a traceback; SIGTERM and SIGHUP, which the parent raises as Ctrl-C (a fork inherits
    that), end a worker, as its terminate() must."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _WORKER[:] = [_Process(WindowReuse(), model)]


def _trial(
    here: _Process | None, config_dump: dict[str, Any], data_dir: str, start: int, end: int, study: str,
    params: dict[str, float],
) -> tuple[float, int]:
    """One trial's backtest: (in-sample return, closed trades). `here` None: a worker process of
    the fold's pool, which has its own (`_start_worker`)."""
    process = here if here is not None else _WORKER[0]
    base = HotcoinConfig.model_validate(config_dump)
    return backtest_return(
        apply(base, params), Path(data_dir), start, end, reuse=process.reuse, run_id=study, model=process.model
    )


def sampler_seed(seed: int, *, shared: bool) -> int:
    """The fold's sampler seed: `seed` itself for a study of this run alone, so a search is
    reproducible; in a `--storage` study, `seed` mixed with a random number of this process's,
    because every process and every resumed run starting from the same seed would draw the same
    random start-up trials (and the same TPE candidates) as the others: duplicates, not a search."""
    if not shared:
        return seed
    return int(hashlib.sha256(f"{seed}:{secrets.token_hex(8)}".encode()).hexdigest()[:8], 16)


_OPEN_TRIES = 6  # a study opened by processes started together: the schema and the study race at most once each
_RACE_SIGNS = ("already exists", "database is locked")  # a table created under our feet (sqlite, postgres); busy


def _race(exc: BaseException) -> bool:
    """An error from another process creating the same storage schema or study at the same
    moment (`hotcoin optimize` started on several machines at once): gone on a retry, unlike
    a URL that names nothing reachable."""
    from optuna.exceptions import DuplicatedStudyError, StorageInternalError
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    if isinstance(exc, StorageInternalError) and exc.__cause__ is not None:  # optuna's wrapper of a failed commit
        exc = exc.__cause__
    if isinstance(exc, IntegrityError | DuplicatedStudyError):
        return True
    return isinstance(exc, OperationalError | ProgrammingError) and any(m in str(exc).lower() for m in _RACE_SIGNS)


def _open_study(name: str, storage: str, seed: int, *, given: bool) -> tuple[Any, bool]:
    """The fold's study (resumed if the storage holds it), and whether this process created it
    (`_claim`: the creator alone writes its identity). Processes opening a fresh storage
    together race to create its tables and the study: those errors are retried. A `--storage`
    URL that cannot be opened (malformed, no driver for it, a database that cannot be reached
    or created) is a `ConfigError` naming it and the fix, not sqlalchemy's traceback."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError, StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    attempt = 0
    while True:
        sampler = optuna.samplers.TPESampler(seed=seed)
        try:
            try:
                return optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler), True
            except DuplicatedStudyError:  # atomic: exactly one process creates a study
                return optuna.load_study(study_name=name, storage=storage, sampler=sampler), False
        except (ImportError, ValueError, SQLAlchemyError, StorageInternalError) as exc:
            if not given:
                raise
            if not _race(exc):
                raise _unreachable(storage, exc) from exc
            attempt += 1
            if attempt == _OPEN_TRIES:
                raise ConfigError(
                    f"--storage {_shown(storage)!r}: study {name!r} could not be opened while other processes were "
                    f"creating it ({_detail(exc)}, {_OPEN_TRIES} tries); run again"
                ) from exc
            time.sleep(0.05 * 2**attempt * (1.0 + secrets.randbelow(100) / 100))  # apart, not in step again


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _shown(storage: str) -> str:
    """The URL as it may be printed: never a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return storage  # not a URL at all: nothing in it parses as a password


def _unreachable(storage: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"--storage {_shown(storage)!r}: optuna cannot open it ({_detail(exc)}); pass an RDB URL "
        "it can reach, e.g. sqlite:///study.db in a folder that exists, or postgresql://user@host/db "
        "with that database's driver installed"
    )


# Config keys that say where and how a machine runs, not what a trial trades: left out of a
# study's identity, so machines with their own paths, keys and job counts can share a study.
_MACHINE_KEYS: dict[str, tuple[str, ...] | None] = {  # section -> its keys left out (None: all of it)
    "paths": None, "log_level": None, "journal": None, "tui": None, "ops": None, "notify": None, "gpu": None,
    "exchange": ("api_key", "api_secret", "endpoint"),
    "ml": ("registry_dir",),
    "backtest": ("data_dir", "discovery_process", "collect_days", "collect_top", "collect_page", "collect_max_backoff_s",
                 "collect_retries", "optimize_trials", "optimize_jobs", "optimize_folds", "optimize_oos_fraction"),
}  # fmt: skip

# What each part of a study's identity is, as a refusal names it.
_IDENTITY_PARTS = {
    "data": "candles (pairs and candle times up to the in-sample end; --data)",
    "config": "trading settings (--config)",
    "space": "searched parameters (another hotcoin version)",
    "model": "model (the registry's, as `hotcoin backtest` loads it: another one, or none)",
}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def _trading_settings(dump: dict[str, Any]) -> dict[str, Any]:
    """The config dump less `_MACHINE_KEYS`: what a trial's result depends on."""
    out: dict[str, Any] = {}
    for section, value in dump.items():
        left_out = _MACHINE_KEYS.get(section, ())
        if left_out is None:
            continue
        out[section] = {k: v for k, v in value.items() if k not in left_out} if isinstance(value, dict) else value
    return out


def study_identity(
    index: HistoryIndex, dump: dict[str, Any], is_end: int, space: dict[str, tuple[float, float, float]],
    model: tuple[str | None, str] = (None, "off"),
) -> dict[str, str]:
    """Digests of what makes two trials of a fold comparable, beside its window (which the
    study's name holds): the candles the in-sample run can see (a point-in-time run reads
    nothing after `is_end`, so a store collected further later keeps its identity; where the
    directory is does not matter), the base config's trading settings, the search space
    (`search_space`: a study searched below the profile's min_heat is not resumed) and the
    model the trials ran with (`model_label`: a production model gates entries)."""
    data = [
        [s, index.first_ms[s], int(np.searchsorted(index.opens[s], is_end, "left"))]
        for s in index.symbols
        if index.first_ms[s] < is_end
    ]
    return {
        "data": _digest(data), "config": _digest(_trading_settings(dump)), "space": _digest(space),
        "model": _model_digest(model),
    }  # fmt: skip


def _model_digest(model: tuple[str | None, str]) -> str:
    return _digest(None if model[0] is None else list(model))


def study_name(prefix: str, fold: int, is_start: int, is_end: int) -> str:
    """A fold's study is named by its in-sample window, so a search over another window never
    resumes it: e.g. `hotcoin-fold1-20210410T0000-20210410T1648`."""

    def stamp(ms: int) -> str:
        return time.strftime("%Y%m%dT%H%M", time.gmtime(ms / 1000))

    return f"{prefix}-fold{fold}-{stamp(is_start)}-{stamp(is_end)}"


_CLAIM_WAIT_S = 5.0  # how long a process that found the study waits for its creator to claim it


def _stored_before(part: str) -> str | None:
    """What an identity stored before `part` was part of it stands for: a study stored before
    the model was (optimize loaded no model then) was searched on the rules alone."""
    return _model_digest((None, "off")) if part == "model" else None


def _claim(study: Any, identity: dict[str, str], *, created: bool) -> None:
    """Tie a new study to this search's identity, and refuse one (a shared `--storage`) whose
    trials were searched with other candles, another base config or another search space:
    their returns are not comparable with this search's, and its best trial could be theirs.

    optuna's user attributes have no compare-and-set, so only the process that created the
    study (`_open_study`: one process creates it, atomically) writes its identity; one that
    found it waits for that write. Two searches started together with other configs, each
    writing its own identity and reading it back, both passed, and mixed their trials. A study
    with no identity and no trials once the wait is over (its creator stopped before writing
    it) is claimed by the process that finds it."""
    stored = study.user_attrs.get("identity")
    waited = 0.0
    while stored is None and not created and not study.trials and waited < _CLAIM_WAIT_S:
        time.sleep(0.1)
        waited += 0.1
        stored = study.user_attrs.get("identity")
    if stored is None:
        if study.trials:
            raise ConfigError(
                f"--storage: study {study.study_name!r} holds {len(study.trials)} trial(s) of an unknown search; "
                "pass --study NAME to start a separate one"
            )
        study.set_user_attr("identity", identity)
        stored = identity
    differs = [k for k in identity if stored.get(k, _stored_before(k)) != identity[k]]
    if "config" in differs and "space" in differs:  # another capital profile moves min_heat's range: one cause
        differs.remove("space")
    differs = [_IDENTITY_PARTS[k] for k in differs]
    if differs:
        raise ConfigError(
            f"--storage: study {study.study_name!r} was searched with other {' and other '.join(differs)}, "
            "so its trials are not comparable with this search's; run with the same --data and --config to join "
            "it, or pass --study NAME to start a separate search"
        )


def _search(
    study: Any, trials: int, trial: Callable[[dict[str, float]], tuple[float, int]], pool: ProcessPoolExecutor | None,
    jobs: int, tick: Callable[[], None] | None, space: dict[str, tuple[float, float, float]],
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Fill `study` up to `trials` complete trials, `jobs` at a time: each round's parameters
    are asked in the parent, backtested (`trial(params)`, in `pool`'s worker processes, or here
    without one), and the results told in trial order once the whole round is back.

    The sampler is the parent's alone and sees the same history whichever backtest finishes
    first, so a search is reproducible for a given --seed and --jobs (a study shared with other
    machines through --storage sees their trials too, as they land). The price: a round waits
    for its slowest trial before the next is asked.

    Counted in complete trials, before each round: a study resumed from --storage searches only
    what it lacks (a finished fold none; asked `trials` more, a resumed fold searched anew and a
    rerun doubled its trials), and machines sharing one stop once it holds `trials`. Every trial
    asked is told, whatever ends the round (a failed backtest, Ctrl-C, SIGTERM): one left
    RUNNING stayed so in a shared storage forever."""
    budget = trials - _complete(study)  # a bound too: a trial told NaN is no complete trial, and asked once only
    while budget > 0 and (left := trials - _complete(study)) > 0:
        _stop_if(stopped)
        asked: list[Any] = []
        told = 0
        try:
            for _ in range(min(jobs, left, budget)):
                budget -= 1
                asked.append(study.ask())
            params = [_suggest(t, space) for t in asked]
            pending = [pool.submit(trial, p) if pool is not None else _here(trial, p) for p in params]
            failure: Exception | None = None
            for asked_trial, outcome in zip(asked, pending, strict=True):
                try:
                    ret, trades = outcome.result()
                except Exception as exc:  # told as failed, and the round's others told too, before it is raised
                    study.tell(asked_trial, state=_failed())
                    told += 1
                    failure = failure or exc
                    continue
                asked_trial.set_user_attr("trades", trades)
                study.tell(asked_trial, ret)
                told += 1
                if tick is not None:
                    tick()
            if failure is not None:
                raise failure
        finally:  # interrupted (Ctrl-C while a round runs): the trials not told yet fail
            for left_running in asked[told:]:
                study.tell(left_running, state=_failed(), skip_if_finished=True)


def _stop_if(stopped: Callable[[], bool]) -> None:
    """Raise the Ctrl-C that `stopped` says came: a KeyboardInterrupt a signal handler raises
    inside a garbage collector's callback is printed and dropped by Python ("Exception
    ignored in"), and a SIGTERM lost so let the search run to its end. Checked before each
    round and each out-of-sample run, it stops the search one trial late at most."""
    if stopped():
        raise KeyboardInterrupt


def _complete(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _here(fn: Callable[[dict[str, float]], tuple[float, int]], params: dict[str, float]) -> Future[tuple[float, int]]:
    """Run `fn` now, in this process, as a finished future (the one-job search). Ctrl-C in it
    (a BaseException) is the future's too, so `_search` tells the trial before raising it."""
    out: Future[tuple[float, int]] = Future()
    try:
        out.set_result(fn(params))
    except BaseException as exc:
        out.set_exception(exc)
    return out


def _failed() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


@contextlib.contextmanager
def _workers(jobs: int, model: ModelLoad | None) -> Iterator[ProcessPoolExecutor]:
    """The fold's worker processes (`_start_worker`), gone when the block ends however it ends:
    ended by an exception (Ctrl-C, SIGTERM, a failed trial) they are terminated, not waited for
    (a worker holds ~370 MB, and one left running a trial outlived its parent for good)."""
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_start_worker, initargs=(model,))
    try:
        yield pool
    except BaseException:
        _terminate(pool)
        raise
    pool.shutdown()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop `pool`'s workers now (Python 3.14's `terminate_workers`): cancel what waits, SIGTERM
    each worker, and reap it (SIGKILL one that has not gone in 5 s)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


class _FoldCounter:
    """Counts a fold's finished trials in its study (shared storage: every process's trials)."""

    def __init__(self, study: Any, fold: int, folds: int, trials: int, report: Callable[[OptimizeProgress], None]) -> None:
        self.study, self.fold, self.folds, self.trials, self.report = study, fold, folds, trials, report
        self.before = self._finished()  # a study resumed from a storage URL may hold trials already
        self.tick()

    def _finished(self) -> list[Any]:
        from optuna.trial import TrialState

        return list(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))

    def tick(self) -> None:
        finished = self._finished()
        values = [t.value for t in finished if t.value is not None]
        done = min(self.trials, len(finished) - len(self.before))
        self.report(OptimizeProgress(self.fold, self.folds, done, self.trials, max(values) if values else None))


def walk_forward(
    config: HotcoinConfig, plan: OptimizePlan, progress: Callable[[OptimizeProgress], None] | None = None,
    model: ModelLoad | None = None, stopped: Callable[[], bool] = lambda: False,
) -> OptimizeResult:
    """The walk-forward search (module docstring). `model`: the registry's model, as `hotcoin
    backtest` loads it (`ml.runtime.load_scorer`); every trial, in whichever process, and both
    out-of-sample runs trade with it, so best.toml's figures are the ones `hotcoin backtest
    --config best.toml` gives. Ctrl-C (a KeyboardInterrupt, or `stopped()` turning true: a signal
    whose KeyboardInterrupt Python dropped, `_stop_if`) raises `SearchInterrupted` with the
    folds finished, once every trial asked is told and the workers are gone."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    index = index_history(plan.data_dir, "1m", config.exchange.quote_asset)
    start, end = window(index, config, plan.start_ms, plan.end_ms)
    span = (end - start) // plan.folds // MINUTE_MS * MINUTE_MS
    oos = int(span * plan.oos_fraction) // MINUTE_MS * MINUTE_MS
    if span - oos < 60 * MINUTE_MS or oos < 60 * MINUTE_MS:
        raise ConfigError(
            f"{plan.folds} fold(s) over {(end - start) // MINUTE_MS} minutes leave less than an hour in or out "
            "of sample; use fewer --folds or a longer --from/--to window"
        )
    windows = _fold_windows(index, config, plan.folds, start, end, span, oos)
    label = model_label(model)
    result = OptimizeResult(notes=space_notes(config), model=label[0], model_mode=label[1])
    k = 0
    try:
        with tempfile.TemporaryDirectory(prefix="hotcoin-optuna-") as tmp:
            storage = plan.storage or f"sqlite:///{Path(tmp) / 'study.db'}"
            dump = config.model_dump(mode="json")
            space = search_space(config)
            for k, (is_start, is_end, oos_end) in enumerate(windows):
                result.folds.append(
                    _fold(config, plan, k + 1, (is_start, is_end, oos_end), storage, index, dump, space, model, progress, stopped)
                )
    except KeyboardInterrupt as exc:
        raise SearchInterrupted(result, k + 1, plan.folds, plan.storage) from exc
    return result


def _fold_windows(
    index: HistoryIndex, config: HotcoinConfig, folds: int, start: int, end: int, span: int, oos: int
) -> list[tuple[int, int, int]]:
    """Each fold's (in-sample start, in-sample end = out-of-sample start, out-of-sample end),
    every window checked against the data (`window`) before any fold is searched: a window
    inside an outage of the data was found only by the backtest after that fold's whole search,
    in an error naming a window the user never typed. The error now says whose window it is."""
    out = []
    for k in range(folds):
        is_start = start + k * span
        is_end = is_start + span - oos
        oos_end = is_start + span if k < folds - 1 else end
        for what, (a, b) in (("in-sample", (is_start, is_end)), ("out-of-sample", (is_end, oos_end))):
            try:
                window(index, config, a, b)
            except ConfigError as exc:
                raise ConfigError(
                    f"fold {k + 1}'s {what} window (--from/--to cut into {folds} fold(s)): {exc}; move --from/--to or "
                    "change --folds so that no fold's window falls there"
                ) from exc
        out.append((is_start, is_end, oos_end))
    return out


def _fold(
    config: HotcoinConfig, plan: OptimizePlan, number: int, bounds: tuple[int, int, int], storage: str,
    index: HistoryIndex, dump: dict[str, Any], space: dict[str, tuple[float, float, float]], model: ModelLoad | None,
    progress: Callable[[OptimizeProgress], None] | None, stopped: Callable[[], bool],
) -> Fold:
    """Fold `number`'s search (resumed from `storage` where it holds the fold's study), then its
    best parameters and the base config out of sample."""
    from optuna.trial import TrialState

    is_start, is_end, oos_end = bounds
    name = study_name(plan.study, number, is_start, is_end)
    shared = plan.storage is not None
    study, created = _open_study(name, storage, sampler_seed(plan.seed + number - 1, shared=shared), given=shared)
    _claim(study, study_identity(index, dump, is_end, space, model_label(model)), created=created)
    asks = max(0, plan.trials - _complete(study))  # a resumed study searches only what it lacks
    jobs = max(1, min(plan.jobs, asks))
    counter = None if progress is None else _FoldCounter(study, number, plan.folds, asks, progress)
    tick = None if counter is None else counter.tick
    if jobs == 1:  # one process: its recordings are this fold's alone
        trial = partial(_trial, _Process(WindowReuse(), model), dump, str(plan.data_dir), is_start, is_end, name)
        _search(study, plan.trials, trial, None, 1, tick, space, stopped)
    else:
        trial = partial(_trial, None, dump, str(plan.data_dir), is_start, is_end, name)
        with _workers(jobs, model) as pool:
            _search(study, plan.trials, trial, pool, jobs, tick, space, stopped)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial
    traded = sum(1 for t in complete if t.user_attrs.get("trades", 0) > 0)
    params = {k: _on_grid(float(v)) for k, v in best.params.items()}
    if progress is not None:
        progress(OptimizeProgress(number, plan.folds, asks, asks, best.value, out_of_sample=True))
    # Both out-of-sample runs read one window: the second replays the first's discovery and market.
    reuse, run_id = WindowReuse(), f"{name}-oos"
    _stop_if(stopped)
    oos_ret, oos_trades = backtest_return(
        apply(config, params), plan.data_dir, is_end, oos_end, reuse=reuse, run_id=run_id, model=model
    )
    _stop_if(stopped)
    base_ret, base_trades = backtest_return(
        config, plan.data_dir, is_end, oos_end, reuse=reuse, run_id=run_id, model=model
    )
    return Fold(
        number, is_start, is_end, is_end, oos_end, params, float(best.value or 0.0), oos_ret, oos_trades,
        len(complete), base_ret, base_trades, int(best.user_attrs.get("trades", 0)), name, traded,
    )  # fmt: skip


def interrupted_lines(stop: SearchInterrupted, out: Path) -> list[str]:
    """What an interrupted search says (stderr): where it stopped, what each finished fold found
    out of sample, that `out` was not written, and what is kept and how to resume. It said
    nothing: minutes of finished folds were lost with no word of them."""
    lines = [f"interrupted in fold {stop.fold} of {stop.folds}; {out} was not written (it takes the last fold's parameters)"]
    for f in stop.result.folds:
        lines.append(
            f"fold {f.index} finished: out of sample {f.oos_return:+.2%} ({f.oos_trades} trades), base config "
            f"{f.base_oos_return:+.2%} ({f.base_oos_trades}), {f.trials} trials, study {f.study}"
        )
    if stop.storage is None:
        lines.append(
            "the trials were kept in a temporary storage, now removed; pass --storage sqlite:///study.db to make a "
            "search resumable"
        )
    else:
        lines.append(
            f"the trials finished are kept in --storage {_shown(stop.storage)!r} (an unfinished one is marked failed): "
            "run the same command again to resume; a finished fold is not searched again, and fold "
            f"{stop.fold} searches only the trials it lacks"
        )
    return lines


def environment_settings(config: HotcoinConfig, sources: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """The trading settings a HOTCOIN_* variable set for the search (`LoadedConfig.sources`):
    dotted key -> (variable, the value the search ran with). The best config is written with
    them: written from the config file alone, a search run under
    HOTCOIN_TRADING__CAPITAL__PROFILE=full reported the full profile's figures and wrote a file
    that replays starter's (capital 100, not 500). Where and how a machine runs (`_MACHINE_KEYS`,
    the secrets among them) is left out, as is a null, which TOML cannot hold."""
    settings = _trading_settings(config.model_dump(mode="json"))
    out: dict[str, tuple[str, Any]] = {}
    for key, origin in sorted(sources.items()):
        value = dotted_get(settings, key)
        if origin.startswith("env:") and value is not None:
            out[key] = (origin.removeprefix("env:"), value)
    return out


def to_toml(
    params: dict[str, float], base: dict[str, Any] | None = None, env: Mapping[str, tuple[str, Any]] | None = None
) -> str:
    """The base config file's settings, the trading settings the environment set for the search
    (`environment_settings`) and the best parameters on top, as TOML: one file that `--config`
    can load on its own, and that replays what the search ran without those variables. Its
    header names the settings that came from the environment (a searched one is the search's)."""
    best = overrides(params)
    env = {key: found for key, found in (env or {}).items() if dotted_get(best, key) is None}
    merged: dict[str, Any] = {}
    deep_update(merged, base or {})
    for key, (_, value) in env.items():
        dotted_set(merged, key, value)
    deep_update(merged, best)
    head = ["# written by `hotcoin optimize`: the base config plus the best parameters; use with --config"]
    if env:
        head.append("# from the environment when the search ran, written below so that this file alone replays it:")
        head += [f"#   {key} = {_value(value)}  ({var})" for key, (var, value) in env.items()]
    return "\n".join(head) + "\n" + _dump(merged)


def _dump(table: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for config data: tables, arrays of tables, strings, numbers, bools, lists."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_tables(v)}
    lines = [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in table.items():
        name = f"{prefix}{_key(k)}"
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + _dump(v, f"{name}.")
        elif _is_tables(v):
            for item in v:
                out += f"\n[[{name}]]\n" + _dump(item, f"{name}.")
    return out


def _is_tables(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(i, dict) for i in v)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def write_best(
    result: OptimizeResult, path: Path, base: dict[str, Any] | None = None, env: Mapping[str, tuple[str, Any]] | None = None
) -> None:
    path.write_text(to_toml(result.best.params, base, env))


def as_json(result: OptimizeResult, out: Path) -> dict[str, Any]:
    return {
        "best_config": str(out),
        "best_params": result.best.params,
        "warning": result.warning,
        "model": result.model,
        "model_mode": result.model_mode,
        "notes": result.notes,
        "folds": [
            {
                "fold": f.index,
                "study": f.study,
                "in_sample": [f.is_start, f.is_end],
                "out_of_sample": [f.oos_start, f.oos_end],
                "params": f.params,
                "in_sample_return": f.is_return,
                "in_sample_trades": f.is_trades,
                "out_of_sample_return": f.oos_return,
                "out_of_sample_trades": f.oos_trades,
                "base_out_of_sample_return": f.base_oos_return,
                "base_out_of_sample_trades": f.base_oos_trades,
                "trials": f.trials,
                "traded_trials": f.traded_trials,
            }
            for f in result.folds
        ],
    }


def folds_table(result: OptimizeResult) -> Any:
    """The folds' figures, then their parameters in a table of their own (a parameter a row, a
    fold a column): nine `name=value` pairs in a fold's row could only be read at 200 columns,
    and both tables fit 80 (dates as `MM-DD HH:MM`, a window's start above its end, a return above its trades)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table

    from engine.backtest.report import iso

    def window_cell(start: int, end: int) -> str:
        return f"{iso(start, short=True)}\n{iso(end, short=True)}"

    def return_cell(ret: float, trades: int) -> str:
        return f"{ret:+.2%}\n({trades})"

    figures = Table(
        title="walk-forward (UTC)", title_justify="left", caption=verdict(result), caption_justify="left",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    for col in ("fold", "in sample", "out of\nsample", "trials", "IS return\n(trades)", "OOS return\n(trades)", "base OOS\n(trades)"):
        figures.add_column(col, justify="left" if col in ("in sample", "out of\nsample") else "right", no_wrap=True)
    for f in result.folds:
        figures.add_row(
            str(f.index), window_cell(f.is_start, f.is_end), window_cell(f.oos_start, f.oos_end), str(f.trials),
            return_cell(f.is_return, f.is_trades), return_cell(f.oos_return, f.oos_trades),
            return_cell(f.base_oos_return, f.base_oos_trades),
        )  # fmt: skip
    return Group(figures, *params_tables(result), *result.notes, model_line(result))


_PARAMS_FOLDS = 6  # folds side by side in one parameters table: 6 fit 80 columns


def params_tables(result: OptimizeResult) -> list[Any]:
    """Each fold's best in-sample parameters, a parameter a row and a fold a column (names read
    whole, and folds side by side show which settings the searches agree on); more than
    `_PARAMS_FOLDS` folds continue in another table below rather than narrowing every column."""
    from rich import box
    from rich.table import Table

    names = list(dict.fromkeys(k for f in result.folds for k in f.params))
    tables = []
    for at in range(0, len(result.folds), _PARAMS_FOLDS):
        folds = result.folds[at : at + _PARAMS_FOLDS]
        table = Table(title="best parameters (in sample)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("parameter", no_wrap=True)
        for f in folds:
            table.add_column(f"fold {f.index}", justify="right", no_wrap=True)
        for name in names:
            table.add_row(name, *(f"{f.params[name]:g}" if name in f.params else "-" for f in folds))
        tables.append(table)
    return tables


def verdict(result: OptimizeResult) -> str:
    """One line under the table: did searching beat the base config out of sample? Counted over
    the folds where a trial traded in sample. Where none did, every trial returned 0 and the
    "best" is the first one asked, never tried: its out-of-sample +0.00 % beside a base config
    that lost was counted as a search that won, which it was not."""
    searched = [f for f in result.folds if f.traded_trials]
    idle = ", ".join(str(f.index) for f in result.folds if not f.traded_trials)
    if not searched:
        return (
            "no trial traded in sample in any fold: nothing was searched, and the parameters written were never "
            "tried; search a longer window, or with more --trials"
        )
    won = sum(f.beats_base for f in searched)
    line = (
        f"out of sample, the searched parameters beat the base config in {won} of {len(searched)} fold(s): "
        f"{sum(f.oos_return for f in searched):+.2%} against {sum(f.base_oos_return for f in searched):+.2%} "
        "summed over the folds"
    )
    if idle:
        line += f" where a trial traded; in fold(s) {idle} no trial traded in sample, so nothing was searched there"
    return line
