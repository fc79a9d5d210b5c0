"""The pieces of `optimize` that are not optuna: parameters to config, TOML out, fold checks."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from engine.backtest import optimize
from engine.backtest.optimize import (
    Fold,
    OptimizePlan,
    OptimizeProgress,
    OptimizeResult,
    SearchInterrupted,
    apply,
    backtest_return,
    folds_table,
    interrupted_lines,
    search_space,
    to_toml,
    verdict,
    walk_forward,
)
from engine.backtest.reuse import WindowReuse
from engine.config import HotcoinConfig
from engine.errors import ConfigError
from tests.engine.backtest.conftest import START, T0, minute_config

PARAMS = {
    "min_heat": 65.0, "max_hold_min": 90, "tp1_gain": 0.03, "tp1_fraction": 0.5, "tp2_extra": 0.04,
    "stop_loss": 0.05, "trailing_stop": 0.02, "exit_fade_ret_5": -0.04, "exit_upper_wick": 0.7,
}  # fmt: skip


def test_parameters_land_on_their_config_keys(config: HotcoinConfig) -> None:
    cfg = apply(config, PARAMS)
    ex = cfg.trading.exits
    assert cfg.trading.signals.min_heat == 65.0
    assert ex.max_hold_ms == 90 * 60_000
    assert [(t.gain, t.fraction) for t in ex.take_profit] == [(0.03, 0.5), (0.07, 1.0)]
    assert (ex.stop_loss, ex.trailing_stop) == (0.05, 0.02)
    assert (cfg.trading.signals.exit_fade_ret_5, cfg.trading.signals.exit_upper_wick) == (-0.04, 0.7)
    assert cfg.discovery == config.discovery  # the rest is untouched
    older = {k: v for k, v in PARAMS.items() if not k.startswith("exit_")}  # a study stored before they were searched
    assert apply(config, older).trading.signals.exit_fade_ret_5 == config.trading.signals.exit_fade_ret_5


def test_toml_keeps_the_base_and_round_trips() -> None:
    base = {
        "log_level": "DEBUG",
        "discovery": {"windows": {"slot_ms": 60000}, "filters": {"blacklist": ['A"B', "C\\D"]}},
        "trading": {"exits": {"breakeven_after_tp": False}},
    }
    data = tomllib.loads(to_toml(PARAMS, base))
    assert data["log_level"] == "DEBUG"
    assert data["discovery"] == base["discovery"]
    assert data["trading"]["exits"]["breakeven_after_tp"] is False
    assert data["trading"]["exits"]["take_profit"][1] == {"gain": 0.07, "fraction": 1.0}
    assert data["trading"]["signals"]["min_heat"] == 65.0


def test_the_environment_s_trading_settings_are_written_and_named(tmp_path: Path) -> None:
    """What HOTCOIN_* variables gave the search lands in the best config over the file's own
    settings (a JSON table key by key), named in the header; a searched setting is the search's,
    and machine settings and secrets are left out."""
    from engine.config import load_config

    cfg = tmp_path / "config.toml"
    cfg.write_text("[trading.capital]\nprofile = \"starter\"\n[trading.exits]\nstop_loss = 0.03\n")
    env = {
        "HOTCOIN_TRADING__CAPITAL__PROFILE": "full", "HOTCOIN_TRADING__EXITS": '{"trailing_stop": 0.05, "breakeven_after_tp": false}',
        "HOTCOIN_BACKTEST__WARMUP_MINUTES": "30", "HOTCOIN_BACKTEST__DATA_DIR": str(tmp_path),
        "HOTCOIN_EXCHANGE__API_KEY": "key-1234", "HOTCOIN_LOG_LEVEL": "DEBUG",
    }  # fmt: skip
    loaded = load_config(cfg, env=env)
    found = optimize.environment_settings(loaded.config, loaded.sources)
    assert found == {
        "backtest.warmup_minutes": ("HOTCOIN_BACKTEST__WARMUP_MINUTES", 30),
        "trading.capital.profile": ("HOTCOIN_TRADING__CAPITAL__PROFILE", "full"),
        "trading.exits.breakeven_after_tp": ("HOTCOIN_TRADING__EXITS", False),
        "trading.exits.trailing_stop": ("HOTCOIN_TRADING__EXITS", 0.05),
    }
    text = to_toml(PARAMS, tomllib.loads(cfg.read_text()), found)
    assert text.splitlines()[1:5] == [
        "# from the environment when the search ran, written below so that this file alone replays it:",
        "#   backtest.warmup_minutes = 30  (HOTCOIN_BACKTEST__WARMUP_MINUTES)",
        '#   trading.capital.profile = "full"  (HOTCOIN_TRADING__CAPITAL__PROFILE)',
        "#   trading.exits.breakeven_after_tp = false  (HOTCOIN_TRADING__EXITS)",
    ]
    assert "trailing_stop = 0.05" not in text  # searched: the best value is written, not the variable's
    assert "key-1234" not in text and "data_dir" not in text and "DEBUG" not in text
    written = tmp_path / "best.toml"
    written.write_text(text)
    replayed = load_config(written, env={}).config
    assert (replayed.trading.capital.profile, replayed.backtest.warmup_minutes) == ("full", 30)
    assert replayed.trading.exits.breakeven_after_tp is False
    assert (replayed.trading.exits.stop_loss, replayed.trading.exits.trailing_stop) == (PARAMS["stop_loss"], PARAMS["trailing_stop"])


def test_too_many_folds_for_the_window(config: HotcoinConfig, store: Path) -> None:
    plan = OptimizePlan(store, START, T0 + (1440 + 180) * 60_000, trials=1, jobs=1, folds=5, oos_fraction=0.3)
    with pytest.raises(ConfigError, match="fewer --folds"):
        walk_forward(config, plan)


def test_progress_counts_each_folds_trials_then_its_out_of_sample_run(config: HotcoinConfig, store: Path) -> None:
    seen: list[OptimizeProgress] = []
    plan = OptimizePlan(store, START, None, trials=2, jobs=1, folds=2, oos_fraction=0.3)
    result = walk_forward(config, plan, progress=seen.append)
    assert [p.fold for p in seen] == sorted(p.fold for p in seen)
    for fold in result.folds:
        mine = [p for p in seen if p.fold == fold.index]
        assert [(p.done, p.out_of_sample) for p in mine] == [(0, False), (1, False), (2, False), (2, True)]
        assert mine[0].best is None and {p.folds for p in mine} == {2} and {p.trials for p in mine} == {2}
        assert mine[-1].best == fold.is_return  # the best in-sample return, as the table reports it


def test_each_fold_reports_the_base_config_out_of_sample(config: HotcoinConfig, store: Path) -> None:
    """The unsearched config's out-of-sample figure, from a run that replays the searched run's
    discovery, is what a backtest of it from scratch gives, as the best trial's in-sample return
    and trades are; the verdict line counts the wins."""
    plan = OptimizePlan(store, START, None, trials=2, jobs=1, folds=2, oos_fraction=0.3)
    result = walk_forward(config, plan)
    for fold in result.folds:
        assert (fold.base_oos_return, fold.base_oos_trades) == backtest_return(config, store, fold.oos_start, fold.oos_end)
        best = apply(config, fold.params)
        assert (fold.is_return, fold.is_trades) == backtest_return(best, store, fold.is_start, fold.is_end)
    searched = [f for f in result.folds if f.traded_trials]
    won = sum(f.oos_return > f.base_oos_return for f in searched)
    line = verdict(result)
    assert f"beat the base config in {won} of {len(searched)} fold(s)" in line
    assert f"{sum(f.base_oos_return for f in searched):+.2%} summed" in line


def _fold(index: int, traded_trials: int, oos_return: float, base_oos_return: float) -> Fold:
    trades = 3 if traded_trials else 0
    return Fold(
        index, T0, T0 + 60_000, T0 + 60_000, T0 + 120_000, PARAMS, 0.02 if trades else 0.0, oos_return, trades, 8,
        base_oos_return, 1, trades, f"hotcoin-fold{index}", traded_trials,
    )  # fmt: skip


def test_the_verdict_counts_no_fold_where_no_trial_traded() -> None:
    """In fold 1 no trial traded in sample (every one returned 0, the "best" is the first asked)
    and the base config lost out of sample: the verdict counted the untried parameters' +0.00 %
    as the search beating the base config. Now only the folds where a trial traded count."""
    line = verdict(OptimizeResult([_fold(1, 0, 0.0, -0.013), _fold(2, 5, -0.004, -0.0013)]))
    assert line == (
        "out of sample, the searched parameters beat the base config in 0 of 1 fold(s): -0.40% against -0.13% "
        "summed over the folds where a trial traded; in fold(s) 1 no trial traded in sample, so nothing was searched there"
    )
    assert verdict(OptimizeResult([_fold(1, 0, 0.0, -0.013)])) == (
        "no trial traded in sample in any fold: nothing was searched, and the parameters written were never tried; "
        "search a longer window, or with more --trials"
    )


def test_a_best_fold_that_searched_nothing_is_a_warning(tmp_path: Path) -> None:
    """best.toml takes the last fold's parameters: where no trial traded in that fold's sample
    they are the first trial's, never tried, and the output said "best parameters written"
    all the same. Now the result carries a warning (the command prints it beside that line),
    and --json has it; a last fold that searched has none."""
    idle_last = OptimizeResult([_fold(1, 5, 0.01, 0.0), _fold(2, 0, 0.0, -0.01)])
    assert idle_last.warning == (
        "fold 2, whose parameters are written, searched nothing: no trial traded in sample, so they are the first "
        "trial's, never tried; do not trade them as searched ones. Search a longer window, or with more --trials"
    )
    assert optimize.as_json(idle_last, tmp_path / "best.toml")["warning"] == idle_last.warning
    searched_last = OptimizeResult([_fold(1, 0, 0.0, -0.01), _fold(2, 5, 0.01, 0.0)])
    assert searched_last.warning is None and optimize.as_json(searched_last, tmp_path / "b.toml")["warning"] is None


def _drop(store: Path, start: int, end: int) -> None:
    """Take every pair's candles from `start` up to `end` out of `store` (an outage of the data)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in store.glob("*.parquet"):
        table = pq.read_table(path)
        ts = table["timestamp_ms"]
        pq.write_table(table.filter(pc.or_(pc.less(ts, start), pc.greater_equal(ts, end))), path)


def test_a_fold_window_inside_an_outage_is_refused_before_any_search(
    config: HotcoinConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fold 1's out-of-sample window lies in an outage: it was found by the backtest after that
    fold's whole search, in an error naming a window the user never typed. Now every fold's
    windows are checked first, and the error says whose window it is."""
    from tests.engine.backtest.conftest import MIN, write_store

    store = write_store(tmp_path / "store")
    # START .. the data's end in 2 folds: fold 1 in sample [START, +158 min], out of sample [+158, +225].
    _drop(store, START + 150 * MIN, START + 235 * MIN)
    monkeypatch.setattr(optimize, "_trial", _fails)  # a trial run would be a search before the check
    plan = OptimizePlan(store, START, None, trials=1, jobs=1, folds=2, oos_fraction=0.3)
    with pytest.raises(ConfigError) as err:
        walk_forward(config, plan)
    message = str(err.value)
    assert message.startswith("fold 1's out-of-sample window (--from/--to cut into 2 fold(s)): the window ")
    assert "lies inside an outage of the data" in message and "change --folds" in message


def test_one_process_search_is_reproducible_and_reuse_changes_no_trial(
    config: HotcoinConfig, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed reaches the sampler that samples (the workers'), and a trial fed the first
    trial's recorded discovery scores exactly what it scores recomputing it."""
    plan = OptimizePlan(store, START, None, trials=3, jobs=1, folds=1, oos_fraction=0.3, seed=11)
    first, again = walk_forward(config, plan), walk_forward(config, plan)
    assert first.folds == again.folds
    monkeypatch.setattr(WindowReuse, "finished", lambda self, key: None)  # never complete: every trial records
    fresh = walk_forward(config, plan)
    assert fresh.folds == first.folds
    other = walk_forward(config, OptimizePlan(store, START, None, trials=3, jobs=1, folds=1, oos_fraction=0.3, seed=12))
    assert [f.params for f in other.folds] != [f.params for f in first.folds]


def test_a_two_process_search_is_reproducible(config: HotcoinConfig, store: Path) -> None:
    """The parent samples and tells each round in trial order: whichever worker finishes
    first, the same --seed and --jobs give the same trials, parameters and folds."""
    plan = OptimizePlan(store, START, None, trials=4, jobs=2, folds=1, oos_fraction=0.3, seed=5)
    first, again = walk_forward(config, plan), walk_forward(config, plan)
    assert first.folds == again.folds and first.folds[0].trials == 4
    one = walk_forward(config, OptimizePlan(store, START, None, trials=4, jobs=1, folds=1, oos_fraction=0.3, seed=5))
    # Rounds of two: the first round's two parameter sets are the sampler's first two draws either way.
    assert one.folds[0].trials == 4


def _fails(*args: object) -> tuple[float, int]:
    raise RuntimeError("a trial's backtest failed")


def test_a_failed_round_leaves_no_trial_running_in_the_storage(
    config: HotcoinConfig, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every trial of the round is told (failed or not) before the failure is raised: a shared
    storage keeps no trial RUNNING forever."""
    import optuna

    monkeypatch.setattr(optimize, "_trial", _fails)  # the worker processes fork with it
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=2, jobs=2, folds=1, oos_fraction=0.3, storage=url, study="failing")
    with pytest.raises(RuntimeError, match="a trial's backtest failed"):
        walk_forward(config, plan)
    (stored,) = optuna.get_all_study_summaries(storage=url)
    assert stored.study_name.startswith("failing-fold1-")
    states = [t.state.name for t in optuna.load_study(study_name=stored.study_name, storage=url).trials]
    assert states == ["FAIL", "FAIL"]


_REAL_TRIAL = optimize._trial


def _stops_in_fold_2(*args: Any) -> tuple[float, int]:
    """A trial as Ctrl-C meets it in fold 2 (`_trial`'s sixth argument is the study's name)."""
    if "-fold2-" in args[5]:
        raise KeyboardInterrupt
    return _REAL_TRIAL(*args)


def _states(url: str) -> dict[str, list[str]]:
    import optuna

    return {
        s.study_name.split("-")[1]: [t.state.name for t in optuna.load_study(study_name=s.study_name, storage=url).trials]
        for s in optuna.get_all_study_summaries(storage=url)
    }


@pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "worker-processes"])
def test_ctrl_c_tells_every_asked_trial_and_keeps_the_finished_folds(
    config: HotcoinConfig, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Ctrl-C in fold 2: the trials it had asked stayed RUNNING in --storage for good (a resume
    counted them), and the fold finished before was said nowhere. Now every asked trial is told
    (FAIL), the interrupt carries the finished folds and says how to resume, and a resumed
    search does not search fold 1 again."""
    monkeypatch.setattr(optimize, "_trial", _stops_in_fold_2)  # the worker processes fork with it
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=2, jobs=jobs, folds=2, oos_fraction=0.3, storage=url, study="stop")
    with pytest.raises(SearchInterrupted) as stopped:
        walk_forward(config, plan)
    stop = stopped.value
    assert (stop.fold, stop.folds, [f.index for f in stop.result.folds]) == (2, 2, [1])
    assert _states(url) == {"fold1": ["COMPLETE", "COMPLETE"], "fold2": ["FAIL"] * jobs}
    lines = interrupted_lines(stop, tmp_path / "best.toml")
    assert lines[0] == f"interrupted in fold 2 of 2; {tmp_path / 'best.toml'} was not written (it takes the last fold's parameters)"
    (done,) = stop.result.folds
    assert lines[1].startswith(f"fold 1 finished: out of sample {done.oos_return:+.2%} ({done.oos_trades} trades)")
    assert "run the same command again to resume" in lines[2] and "fold 2 searches only the trials it lacks" in lines[2]
    monkeypatch.setattr(optimize, "_trial", _REAL_TRIAL)
    resumed = walk_forward(config, plan)
    assert resumed.folds[0] == done  # fold 1 was not searched again: its two trials, its figures
    assert [f.trials for f in resumed.folds] == [2, 2]  # fold 2's failed trials are no trials of the search
    assert _states(url) == {"fold1": ["COMPLETE", "COMPLETE"], "fold2": ["FAIL"] * jobs + ["COMPLETE", "COMPLETE"]}


def test_a_signal_whose_interrupt_python_dropped_still_stops_the_search(
    config: HotcoinConfig, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt that a signal handler raises inside a garbage collector's callback
    is printed and dropped ("Exception ignored in"): a SIGTERM so lost let the search run to
    its end. `stopped` (the command's record of the signals it caught) stops it at the next round."""
    ran: list[object] = []

    def counted(*args: Any) -> tuple[float, int]:
        ran.append(args[-1])
        return _REAL_TRIAL(*args)

    monkeypatch.setattr(optimize, "_trial", counted)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=3, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    with pytest.raises(SearchInterrupted) as stopped:
        walk_forward(config, plan, stopped=lambda: bool(ran))
    assert stopped.value.fold == 1 and len(ran) == 1
    assert _states(url) == {"fold1": ["COMPLETE"]}


def test_without_storage_an_interrupt_says_nothing_was_kept(tmp_path: Path) -> None:
    stop = SearchInterrupted(OptimizeResult(), 1, 3, None)
    assert interrupted_lines(stop, tmp_path / "best.toml")[1:] == [
        "the trials were kept in a temporary storage, now removed; pass --storage sqlite:///study.db to make a "
        "search resumable"
    ]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("bogus://x", "'bogus://x': optuna cannot open it (NoSuchModuleError"),
        ("sqlite:////nonexistent-hotcoin-dir/study.db", "cannot open it (OperationalError"),
        ("postgresql://trader:hunter2@127.0.0.1:1/studies", "'postgresql://trader:***@127.0.0.1:1/studies'"),
    ],
    ids=["unknown-scheme", "missing-folder", "password-hidden"],
)
def test_a_storage_url_that_cannot_be_opened_is_named_with_the_fix(
    config: HotcoinConfig, store: Path, url: str, said: str
) -> None:
    plan = OptimizePlan(store, START, None, trials=1, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    with pytest.raises(ConfigError, match="pass an RDB URL") as err:
        walk_forward(config, plan)
    assert said in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_shared_storage_keeps_each_windows_trials_apart(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    """Another window on the same --storage is another study (its best trial is its own); the
    same search again joins the first study, as machines sharing a storage do, and asks only
    the trials it lacks."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = OptimizePlan(store, START, None, trials=2, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    other = OptimizePlan(store, START + 60 * 60_000, None, trials=2, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    (a,) = walk_forward(config, first).folds
    (b,) = walk_forward(config, other).folds
    assert b.trials == 2 and b.study != a.study
    assert (b.is_return, b.is_trades) == backtest_return(apply(config, b.params), store, b.is_start, b.is_end)
    (again,) = walk_forward(config, dataclasses.replace(first, trials=3)).folds
    assert again.study == a.study and again.trials == 3


def test_a_resumed_fold_searches_only_the_trials_it_lacks(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    """Rerun on its --storage, a finished fold was searched anew (`trials` more each run), and
    its "trials" counted failed and stale RUNNING ones too. Now a fold asks only the complete
    trials it lacks, and counts only complete ones."""
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=2, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    (first,) = walk_forward(config, plan).folds
    study = optuna.load_study(study_name=first.study, storage=url)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # RUNNING for good: a process killed before the fix
    (again,) = walk_forward(config, plan).folds
    assert again == first and again.trials == 2
    assert len(optuna.load_study(study_name=first.study, storage=url).trials) == 4  # none asked
    (more,) = walk_forward(config, dataclasses.replace(plan, trials=3)).folds
    assert more.trials == 3 and len(optuna.load_study(study_name=first.study, storage=url).trials) == 5


def test_a_shared_study_of_another_config_is_refused(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    """Same window, other trading settings: the study's trials are not comparable, so the run
    refuses, naming what differs and the fix; a machine's own paths and job count are no
    difference."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=1, jobs=1, folds=1, oos_fraction=0.3, storage=url)
    walk_forward(config, plan)
    elsewhere = config.model_copy(
        update={"backtest": config.backtest.model_copy(update={"optimize_jobs": 16, "data_dir": tmp_path})}
    )
    assert walk_forward(elsewhere, dataclasses.replace(plan, trials=2)).folds[0].trials == 2  # joined: one more
    signals = config.trading.signals.model_copy(update={"min_ret_5": 0.02})
    looser = config.model_copy(update={"trading": config.trading.model_copy(update={"signals": signals})})
    with pytest.raises(ConfigError, match=r"with other trading settings .* or pass --study NAME"):
        walk_forward(looser, plan)


@pytest.mark.parametrize("width", [80, 120, 200], ids=["80-cols", "120-cols", "200-cols"])
def test_the_folds_table_reads_whole_at_every_width(width: int) -> None:
    """Every date, figure, parameter name and value is printed whole (no `2021-…`, no
    `min_h…`), in lines no wider than the terminal: 80 columns is what a pipe gets."""
    from rich.console import Console

    params = {**PARAMS, "tp2_extra": 0.19999999999999998}  # as optuna's float steps give it
    folds = [
        Fold(i, T0 + i * 86_400_000, T0 + i * 86_400_000 + 60_480_000, T0 + i * 86_400_000 + 60_480_000,
             T0 + (i + 1) * 86_400_000, params, 0.40123, -0.1234, 123, 40, -1.0, 17, 5, f"hotcoin-fold{i}", 30)
        for i in range(1, 8)
    ]  # fmt: skip
    console = Console(width=width, record=True)
    console.print(folds_table(OptimizeResult(folds)))
    text = console.export_text()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "04-17 00:00" in text and "04-17 16:48" in text  # fold 1's in-sample window, MM-DD HH:MM
    assert "+40.12%" in text and "-100.00%" in text and "(123)" in text
    assert "fold 7" in text and "tp2_extra" in text and " 0.2 " in text
    for name in PARAMS:
        assert name in text


def test_stepped_parameters_read_as_their_grid_points() -> None:
    """optuna's step arithmetic gives 0.19999999999999998 for 0.2: trials, tables, --json and
    the best config all see 0.2."""
    import optuna

    from engine.backtest.optimize import SPACE, _suggest

    noisy = {name: lo for name, (lo, _, _) in SPACE.items()}
    noisy["tp2_extra"] = 0.19999999999999998  # what 0.02 + 9 * 0.02 gives
    got = _suggest(optuna.trial.FixedTrial(noisy), SPACE)
    assert got["tp2_extra"] == 0.2
    assert all(repr(v) == repr(float(f"{v:.10g}")) for v in got.values() if isinstance(v, float))


@pytest.mark.parametrize(
    ("capital", "searched"),
    [
        ({"profile": "starter"}, (70.0, 90.0, 5.0)),
        ({"profile": "growth"}, (50.0, 90.0, 5.0)),
        ({"profile": "full"}, (40.0, 90.0, 5.0)),
        ({"profiles": {"starter": {"min_heat": 72.5}}}, (72.5, 87.5, 5.0)),
        ({"profiles": {"starter": {"min_heat": 95.0}}}, (95.0, 95.0, 5.0)),
    ],
    ids=["starter-70", "growth-50", "full-0", "off-grid", "above-the-top"],
)
def test_min_heat_is_searched_from_the_capital_profiles_threshold(
    capital: dict[str, object], searched: tuple[float, float, float]
) -> None:
    """Entry needs heat >= the higher of signals.min_heat and the profile's: below the
    profile's, every searched value trades alike."""
    assert search_space(minute_config(trading={"capital": capital}))["min_heat"] == searched


def test_every_searched_min_heat_is_the_threshold_in_force(
    config: HotcoinConfig, store: Path, tmp_path: Path
) -> None:
    """With the starter profile (heat >= 70) no trial, best parameter or best config names a
    min_heat below 70 (which would trade as 70), and the output says why the range starts there."""
    import optuna
    from rich.console import Console

    assert config.trading.capital.active.min_heat == 70.0
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=6, jobs=1, folds=1, oos_fraction=0.3, storage=url, seed=3)
    result = walk_forward(config, plan)
    (fold,) = result.folds
    searched = [t.params["min_heat"] for t in optuna.load_study(study_name=fold.study, storage=url).trials]
    assert len(searched) == 6 and min(searched) >= 70.0
    assert fold.params["min_heat"] >= 70.0
    assert tomllib.loads(to_toml(fold.params))["trading"]["signals"]["min_heat"] >= 70.0
    (note,) = result.notes
    assert "min_heat searched 70 to 90" in note and "trading.capital.profiles.starter.min_heat" in note
    assert optimize.as_json(result, tmp_path / "best.toml")["notes"] == [note]
    console = Console(width=80, record=True)
    console.print(folds_table(result))
    assert "profile 'starter' enters only at heat >= 70" in " ".join(console.export_text().split())


def test_runs_sharing_a_storage_sample_their_own_trials(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    """Two runs with the same --seed on one --storage study (one after the other here, as a
    resumed run; processes started together open it the same way) draw their own start-up
    trials rather than the first run's again."""
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = OptimizePlan(store, START, None, trials=2, jobs=1, folds=1, oos_fraction=0.3, storage=url, seed=7)
    walk_forward(config, plan)
    (fold,) = walk_forward(config, dataclasses.replace(plan, trials=4)).folds  # asks the two it lacks
    trials = optuna.load_study(study_name=fold.study, storage=url).trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials) == 4
    assert optimize.sampler_seed(7, shared=False) == 7  # without --storage: the seed itself, reproducible


def test_processes_opening_a_fresh_storage_together_all_get_the_study(tmp_path: Path) -> None:
    """Searches started together on a new sqlite file race to create its tables and the study
    (`UNIQUE constraint failed: alembic_version`, `table studies already exists`): each opens
    it, exactly one of them created it, and none is told its URL is bad."""
    import threading

    for n in range(3):
        url = f"sqlite:///{tmp_path / f'study{n}.db'}"
        start = threading.Barrier(4)
        opened: list[object] = []

        def open_it(url: str = url, start: threading.Barrier = start, opened: list[object] = opened) -> None:
            start.wait()
            try:
                opened.append(optimize._open_study("together-fold1", url, 7, given=True))
            except Exception as exc:  # collected, for the assertion below
                opened.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [o for o in opened if isinstance(o, Exception)] == []
        assert sorted(o[1] for o in opened if isinstance(o, tuple)) == [False, False, False, True]


def test_a_storage_that_stays_contended_is_not_blamed_on_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema race that outlasts the retries says so and to run again; it is not a bad URL."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    def racing(**_: object) -> None:
        raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(optuna, "create_study", racing)
    monkeypatch.setattr(optimize, "_OPEN_TRIES", 2)
    with pytest.raises(ConfigError, match="while other processes were creating it") as err:
        optimize._open_study("busy-fold1", f"sqlite:///{tmp_path / 'study.db'}", 7, given=True)
    assert "pass an RDB URL" not in str(err.value) and "run again" in str(err.value)


def test_a_study_found_unclaimed_waits_for_its_creators_identity(tmp_path: Path) -> None:
    """A process that found the study (did not create it) does not write its own identity over
    the creator's: it waits for it, then compares (two searches with other configs started
    together each read back their own identity, and mixed their trials)."""
    import threading

    url = f"sqlite:///{tmp_path / 'study.db'}"
    creator, created = optimize._open_study("claimed-fold1", url, 7, given=True)
    found, found_created = optimize._open_study("claimed-fold1", url, 7, given=True)
    assert (created, found_created) == (True, False)
    theirs = {"data": "a", "config": "b", "space": "c"}
    writes = threading.Timer(0.3, optimize._claim, (creator, theirs), {"created": True})
    writes.start()
    with pytest.raises(ConfigError, match="with other trading settings"):
        optimize._claim(found, {**theirs, "config": "other"}, created=False)
    writes.join()
    assert found.user_attrs["identity"] == theirs
    optimize._claim(found, theirs, created=False)  # the same search joins it


def test_a_study_searched_with_another_model_is_refused_and_an_older_one_reads_as_rules_only(tmp_path: Path) -> None:
    """A production model gates entries, so trials searched with it and without it are not
    comparable: the model is part of a study's identity. A study stored before it was (optimize
    then loaded no model) was searched on the rules alone, and joins a search on them."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    older, _ = optimize._open_study("older-fold1", url, 7, given=True)
    older.set_user_attr("identity", {"data": "a", "config": "b", "space": "c"})  # as stored before
    rules = {"data": "a", "config": "b", "space": "c", "model": optimize._model_digest((None, "off"))}
    optimize._claim(older, rules, created=False)
    with_model = {**rules, "model": optimize._model_digest(("hot_lgbm_1m@v0001#1a2b3c4d", "production"))}
    with pytest.raises(ConfigError, match=r"with other model \(the registry's"):
        optimize._claim(older, with_model, created=False)


@pytest.mark.parametrize(
    ("max_spread", "stop_loss", "searched"),
    [
        (None, 0.04, (0.02, 0.08, 0.01)),
        (0.01, 0.04, (0.02, 0.08, 0.01)),
        (0.025, 0.04, (0.03, 0.08, 0.01)),
        (0.03, 0.04, (0.04, 0.08, 0.01)),
        (0.085, 0.09, (0.09, 0.09, 0.01)),
    ],
    ids=["unset", "below-the-range", "off-grid", "on-grid", "above-the-top"],
)
def test_stop_loss_is_searched_above_a_set_max_spread(
    max_spread: float | None, stop_loss: float, searched: tuple[float, float, float]
) -> None:
    """A stop at or under `risk.max_spread` is refused by the config: a trial there would stop
    the search with a config error, so the stops searched start above it."""
    config = minute_config(trading={"risk": {"max_spread": max_spread}, "exits": {"stop_loss": stop_loss}})
    assert search_space(config)["stop_loss"] == searched
    lo, hi, _ = searched
    for stop in (lo, hi):
        assert apply(config, {**PARAMS, "stop_loss": stop}).trading.exits.stop_loss == stop  # loads
    said = [note for note in optimize.space_notes(config) if note.startswith("stop_loss searched")]
    assert said == ([] if searched == (0.02, 0.08, 0.01) else [
        f"stop_loss searched {lo:g} to {hi:g}, not 0.02 to 0.08: a stop must be above trading.risk.max_spread "
        f"{max_spread:g}; lower that to search below it"
    ])  # fmt: skip
