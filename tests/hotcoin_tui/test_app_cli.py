"""`hotcoin tui`: options in, one client out (in-process engine, attached, or fake), the [tui] config section."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import load_config
from engine.errors import ConfigError
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.snapshot import Mode
from hotcoin_tui.cli import app
from hotcoin_tui.commands.tui_cmd import TuiOptions, build_fake_client

REPO = Path(__file__).resolve().parents[2]


def test_fake_option_builds_the_fake_client_as_asked() -> None:
    client = build_fake_client(TuiOptions(fake=True, seed=3, candidates=40, positions=4, fake_mode="live"))
    assert isinstance(client, FakeEngineClient)
    snap = client.latest()
    assert snap is not None and len(snap.candidates) == 40 and len(snap.positions) == 4
    assert snap.status.mode is Mode.LIVE


@pytest.mark.parametrize(("options", "message"), [
    (TuiOptions(fake=True, fake_mode="REAL"), "--fake-mode 'REAL': use SIM, PAPER or LIVE"),
    (TuiOptions(fake=True, candidates=3, positions=9), "--positions between 0 and --candidates"),
], ids=["bad-mode", "bad-counts"])  # fmt: skip
def test_unusable_options_are_named(options: TuiOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_fake_client(options)


def test_command_is_registered_and_documents_its_options() -> None:
    result = CliRunner().invoke(app, ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--fake", "--seed", "--candidates", "--positions", "--fake-mode", "--step-s", "--config"):
        assert option in result.output


async def test_the_console_runs_the_real_engine_in_process(tmp_path: Path) -> None:
    """No flags: the engine on the simulated market, on its own thread; `q` shuts it down."""
    from engine.runtime.session import RunOptions
    from engine.runtime.threaded import EngineThread
    from hotcoin_tui.app import HotcoinApp
    from tests.kit.waiting import eventually

    config = load_config(
        env={}, cli={"journal.path": str(tmp_path / "j.sqlite"), "sim.symbols": 40, "ops.http_enabled": False}
    ).config
    engine = EngineThread(config, RunOptions(speed=60, attach_socket=False))
    with engine as client:
        console = HotcoinApp(client, config.tui)
        async with console.run_test(size=(120, 36)) as pilot:
            await eventually(lambda: console.snapshot is not None and console.snapshot.status.mode is Mode.SIM, timeout=30)
            await pilot.press("q")
            await eventually(lambda: engine.session.engine.hub.latest is not None and engine.session.engine._stop.is_set(), timeout=15)
    assert engine.session.journal_path.exists()


def test_attach_without_a_running_engine_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tui", "--attach"])
    assert result.exit_code != 0
    assert "hotcoin run" in str(result.exception) + result.output


@pytest.mark.parametrize("command", ["run", "tui"])
@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--exchange", "binance"], "--exchange binance"), (["--endpoint", "http://127.0.0.1:9"], "--endpoint http://127.0.0.1:9")],
)
def test_demo_with_another_market_on_the_same_line_is_refused(command: str, flags: list[str], named: str) -> None:
    """Audit: `run --demo --exchange binance` ran the simulated market without a word, which
    looks like trading Binance."""
    result = CliRunner().invoke(app, [command, "--demo", *flags, "--duration", "1"] if command == "run" else [command, "--demo", *flags])
    assert result.exit_code == 2
    assert f"cannot be combined with {named}" in " ".join(result.output.split())


def test_tui_section_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[tui]\ncandidate_rows = 80\nchart_refresh_s = 2.0\n[tui.keymap]\nclose_all = "ctrl+k"\npause = "p,f9"\n')
    tui = load_config(path).config.tui
    assert tui.candidate_rows == 80 and tui.chart_refresh_s == 2.0
    assert tui.keymap == {"close_all": "ctrl+k", "pause": "p,f9"}


@pytest.mark.parametrize("body", [
    '[tui.keymap]\npause = "p f9"\n',
    '[tui.keymap]\n"Pause!" = "p"\n',
    "[tui]\nchart_refresh_s = 0.01\n",
    "[tui]\nrows = 10\n",
], ids=["space-in-keys", "bad-id", "refresh-too-fast", "unknown-key"])  # fmt: skip
def test_bad_tui_settings_are_rejected(tmp_path: Path, body: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError):
        load_config(path)


def test_start_up_leaves_heavy_modules_unimported() -> None:
    """plotext, the replay model and the fake engine load on first use, not at start."""
    code = (
        "import sys, hotcoin_tui.cli, hotcoin_tui.app;"
        "heavy = [m for m in ('plotext', 'engine.journal.trace', 'hotcoin_tui.replay_view', 'pandas')"
        " if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


async def test_close_all_from_the_console_flattens_the_real_engine(tmp_path: Path) -> None:
    """The demo market's first pump is bought; ctrl+x then Y sells it: the engine is flat."""
    from engine.journal.reader import JournalReader
    from engine.runtime.session import RunOptions
    from engine.runtime.threaded import EngineThread
    from hotcoin_tui.app import HotcoinApp
    from tests.kit.waiting import eventually

    # Exits that never fire on their own: the position stays until close-all sells it.
    hold = {
        "trading.exits.take_profit": [{"gain": 50.0, "fraction": 1.0}],
        "trading.exits.stop_loss": 0.9,
        "trading.exits.trailing_activation": 50.0,
        "trading.exits.exit_on_signal": False,
        "trading.exits.max_hold_ms": 30 * 86_400_000,
    }
    config = load_config(
        env={}, cli={"journal.path": str(tmp_path / "j.sqlite"), "sim.symbols": 40, "ops.http_enabled": False, **hold}
    ).config
    engine = EngineThread(config, RunOptions(attach_socket=False, lockstep_ms=5_000))
    with engine as client:
        console = HotcoinApp(client, config.tui)
        async with console.run_test(size=(120, 36)) as pilot:
            await eventually(lambda: console.snapshot is not None and bool(console.snapshot.positions), timeout=60)
            await pilot.press("ctrl+x")
            await pilot.press("Y")
            await eventually(
                lambda: console.snapshot is not None
                and console.snapshot.close_all is not None
                and console.snapshot.close_all.done
                and not console.snapshot.positions,
                timeout=30,
            )
            await pilot.press("escape", "q")
    with JournalReader(engine.session.journal_path) as reader:
        exits = [e for e in reader.events(kinds=["order_attempt"]) if e.payload["purpose"] == "close_all"]
        commands = [e.payload["origin"] for e in reader.events(kinds=["command"]) if e.payload["command"] == "close_all"]
    assert exits, "close-all sold nothing"
    assert commands == [console.origin]  # who asked, as the journal keeps it
    assert console.origin.startswith(f"tui@{socket.gethostname()}:{os.getpid()}")


@pytest.mark.parametrize("case", ["log-is-a-folder", "journal-under-a-file"])
def test_the_console_refuses_a_journal_path_it_cannot_write_beside_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """`hotcoin tui -j ro/journal.sqlite` printed a traceback from opening the engine's log
    beside the journal, before the engine or the screen started."""
    from hotcoin_tui import cli

    if case == "log-is-a-folder":
        journal = tmp_path / "journal.sqlite"
        (tmp_path / "journal.log").mkdir()
        words = f"hotcoin: cannot write the engine's log {tmp_path}/journal.log (Is a directory); the console keeps it beside the journal"
    else:
        (tmp_path / "garbage.sqlite").write_text("not a folder")
        journal = tmp_path / "garbage.sqlite" / "journal.sqlite"
        words = f"hotcoin: the journal's folder {tmp_path}/garbage.sqlite is a file, not a folder; point --journal"
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(sys, "argv", ["hotcoin", "tui", "--no-http", "-j", str(journal)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(words) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("value", "words"), [("nan", "nan is not a number of seconds"), ("-3", "-3 is negative")])
def test_run_names_a_duration_that_is_not_a_count_of_seconds(value: str, words: str) -> None:
    """`--duration nan` was refused as "should be >= 0", which it is not the problem with."""
    result = CliRunner().invoke(app, ["run", "--duration", value], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert words in result.stderr
