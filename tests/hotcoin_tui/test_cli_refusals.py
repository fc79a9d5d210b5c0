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
