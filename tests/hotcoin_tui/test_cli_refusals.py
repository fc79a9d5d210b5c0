"""Command lines the CLI refuses before doing any work: each names the option and the fix,
exits 2 (a usage error) and prints no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotcoin_tui.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, " ".join(result.output.split()), result.exception


JOURNAL_COMMANDS = [
    ["run", "--duration", "0"],
    ["tui", "--in-process"],
    ["backtest", "--data", "nowhere"],
    ["doctor"],
    ["report"],
    ["traces"],
    ["replay", "abc"],
    ["journal", "check"],
    ["journal", "export"],
]


@pytest.mark.parametrize("command", JOURNAL_COMMANDS, ids=lambda c: "-".join(w for w in c if w.isalpha()))
def test_an_empty_journal_path_is_a_usage_error_for_every_command(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: `-j ""` (`-j "$J"` with J unset) is the current folder; `run`, `tui`, `backtest`
    and `doctor` died on `PosixPath('.') has an empty name` with a traceback."""
    monkeypatch.chdir(tmp_path)
    code, out, exc = invoke(*command, "-j", "")
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert ". is a directory (an empty path is the current folder)" in out
    assert "point --journal at the journal file" in out


@pytest.mark.parametrize("command", JOURNAL_COMMANDS[:4], ids=lambda c: c[0])
def test_a_directory_as_the_journal_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    code, out, exc = invoke(*command, "--journal", str(tmp_path))
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert f"{tmp_path} is a directory; point --journal at the journal file, e.g. {tmp_path}/journal.sqlite" in out


@pytest.mark.parametrize(
    ("seed", "folds", "top"),
    [("-5", "1", 2**32 - 1), ("4294967296", "1", 2**32 - 1), ("4294967294", "3", 2**32 - 3)],
    ids=["negative", "past-2**32", "past-the-last-fold"],
)
def test_optimize_refuses_a_seed_the_sampler_cannot_take_before_reading_data(
    seed: str, folds: str, top: int, tmp_path: Path
) -> None:
    """Audit: `optimize --seed -5` failed in optuna's TPESampler once the candles were loaded;
    fold k samples from seed + k - 1, so the top of the range falls with the folds."""
    code, out, exc = invoke("optimize", "--data", str(tmp_path / "no-candles"), "--seed", seed, "--folds", folds)
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert f"--seed {seed} is out of range: give 0 to {top}" in out


def test_an_optimize_plan_takes_every_seed_its_folds_can_sample_from() -> None:
    from engine.backtest.optimize import OptimizePlan

    plan = OptimizePlan(Path(), None, None, trials=1, jobs=1, folds=3, oos_fraction=0.3, seed=2**32 - 3)
    assert plan.seed + plan.folds - 1 == 2**32 - 1
    assert OptimizePlan(Path(), None, None, trials=1, jobs=1, folds=3, oos_fraction=0.3, seed=0).seed == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run", "--yes-really-trade-live", "--duration", "0"], "--yes-really-trade-live confirms --live, which is not on this line"),
        (["tui", "--yes-really-trade-live"], "--yes-really-trade-live confirms --live, which is not on this line"),
        (["tui", "--fake", "--live"], "--fake runs the scripted fake engine (generated data, no orders) and cannot be combined with --live"),
        (["tui", "--attach", "--fake"], "--fake runs the scripted fake engine (generated data, no orders) and cannot be combined with --attach"),
        (["run", "--exchange", "sim", "--endpoint", "http://127.0.0.1:9", "--seed", "3"],
         "--seed shapes the simulated market run in-process, and this run trades on the exchange at http://127.0.0.1:9"),
        (["run", "--exchange", "binance", "--symbols", "40"], "--symbols shapes the simulated market run in-process, and this run trades on binance"),
        (["tui", "--exchange", "binance", "--sim-seed", "3"], "--sim-seed shapes the simulated market run in-process, and this run trades on binance"),
        (["tui", "--attach", "--symbols", "40"], "--symbols shapes the simulated market run in-process, and this run trades on the engine already running"),
        (["train", "--task", "hot_lgbm", "--symbols", ""], "'' names no pair; give e.g. DOGE/USDT,WIN/USDT, or leave --symbols out"),
        (["train", "--task", "hot_lgbm", "--symbols", " , "], "' , ' names no pair"),
    ],
    ids=["run-confirm-alone", "tui-confirm-alone", "fake-live", "attach-fake", "seed-at-endpoint", "symbols-on-binance",
         "tui-sim-seed-on-binance", "tui-symbols-attached", "train-empty-symbols", "train-blank-symbols"],
)  # fmt: skip
@pytest.mark.timeout(60)  # unrefused, `tui --fake ...` runs the console until stopped
def test_a_flag_that_would_do_nothing_here_is_named(args: list[str], named: str, tmp_path: Path) -> None:
    """Audit: these lines were taken and the flag silently dropped (`run --yes-really-trade-live`
    traded paper, `--seed` with a remote market set nothing, `train --symbols ""` trained on all)."""
    code, out, exc = invoke(*args, "--journal" if args[0] != "train" else "--data", str(tmp_path / "j.sqlite"))
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert named in out


def test_sim_flags_still_shape_the_demo_on_any_configured_exchange(tmp_path: Path) -> None:
    """`--demo` runs the simulated market in-process whatever exchange is configured: its flags count."""
    config = tmp_path / "config.toml"
    config.write_text('[exchange]\nname = "binance"\n')
    code, out, _ = invoke("run", "--demo", "--seed", "3", "--symbols", "20", "--duration", "0", "--no-http",
                          "-c", str(config), "-j", str(tmp_path / "j.sqlite"))  # fmt: skip
    assert code == 0, out


@pytest.mark.parametrize(
    "args",
    [["run", "--speed", "nan"], ["tui", "--speed", "NaN"], ["tui", "--fake", "--step-s", "nan"],
     ["sim-exchange", "--ban", "nan"], ["sim-exchange", "--speed", "nan"], ["sim-exchange", "--ws-reorder-rate", "nan"]],
    ids=lambda a: "-".join(w.strip("-") for w in a if w.lower() != "nan"),
)  # fmt: skip
@pytest.mark.timeout(60)  # unrefused, `sim-exchange` serves until stopped
def test_nan_for_a_float_option_is_said_to_be_no_number(args: list[str]) -> None:
    """Audit: `run --speed nan` said "Input should be less than or equal to 1000" (NaN compares
    false with every bound), and an option with no bounds took NaN as a value."""
    code, out, exc = invoke(*args)
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert f"Invalid value for '{args[-2]}': nan is not a number" in out
    assert "less than" not in out


@pytest.mark.parametrize("command", ["run", "tui"])
def test_an_endpoint_with_no_scheme_gets_collects_message(command: str, tmp_path: Path) -> None:
    """Audit: `run --endpoint 127.0.0.1:1` asked "127.0.0.1:1/api/v3/time" for the server time
    and failed in ccxt's words; `collect` names the problem and the fix."""
    code, out, exc = invoke(command, "--endpoint", "127.0.0.1:1", "-j", str(tmp_path / "j.sqlite"))
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert (
        "--endpoint '127.0.0.1:1' is not an http(s) URL with a host; use e.g. http://127.0.0.1:8765" in out
    )
