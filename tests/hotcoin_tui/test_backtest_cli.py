"""`hotcoin backtest | collect | optimize` through the Typer app, as a user runs them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.backtest.history import HistoryStore
from engine.config import load_config
from engine.domain import Candle
from engine.sim.server import SimExchangeServer
from hotcoin_tui.cli import app
from tests.engine.backtest.conftest import MIN, START, T0, write_store
from tests.kit.models import register_booster, register_unloadable
from tests.kit.sim_exchange import FakeMarketSource, running_sim_exchange

runner = CliRunner()
CONFIG = """
[discovery.windows]
slot_ms = 60000
history_slots = 128
capacity = 64
volume_bucket_ms = 60000
[discovery.anomaly]
baseline_refresh_batches = 1
[discovery.pool]
bar_ms = 60000
"""


def invoke(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(CONFIG)
    return path


def test_backtest_json(store: Path, config_file: Path) -> None:
    code, out, err = invoke("backtest", "--data", str(store), "--config", str(config_file), "--from", str(START), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {t["symbol"] for t in doc["trades"]} >= {"PUMP/USDT", "ALT/USDT"}
    m = doc["metrics"]
    assert set(m) >= {"total_return", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "exposure", "trades"}
    assert m["trades"] == len(doc["trades"])
    assert doc["initial_equity"] == 100.0  # the starter profile's capital, which the figures start from
    assert m["final_equity"] == pytest.approx(doc["initial_equity"] * (1 + m["total_return"]))
    # each exit is credited with what its own fills realised: the rows add up to the trades
    assert sum(e["pnl"] for e in doc["exits"]) == pytest.approx(sum(t["pnl"] for t in doc["trades"]))
    assert sum(e["fees"] for e in doc["exits"]) == pytest.approx(sum(t["fees"] for t in doc["trades"]))
    labels = {t["exit_reason"] + (": " + ", ".join(t["exit_rules"]) if t["exit_rules"] else "") for t in doc["trades"]}
    assert labels <= {e["reason"] for e in doc["exits"]}  # a trade's last exit sold some of it
    dust = doc["dust"]  # the crumbs written off: a row of the exits, and said apart with their worth
    assert dust["in_equity"] is False and dust["count"] == sum(e["fills"] for e in doc["exits"] if e["reason"] == "dust")
    assert m["no_losing_trade"] is (m["profit_factor"] is None and m["trades"] > 0)
    assert all(bool(t["exit_rules"]) == (t["exit_reason"] == "signal_exit") for t in doc["trades"])
    market = doc["market"]  # buy and hold of the store's six pairs over the same window
    assert market["pairs"] == 6 and market["reference"] == "BTC/USDT" and set(market["changes"]) >= {"BTC/USDT", "NEW/USDT"}
    assert market["mean_change"] == pytest.approx(sum(market["changes"].values()) / 6)
    assert len(doc["equity"]["ts_ms"]) == doc["cycles"]
    assert doc["journal"] is None
    assert doc["processes"] == 1  # an 8-hour window: under `auto`'s 12 h, one process


def test_a_backtest_process_ends_without_teardown_and_says_the_same(store: Path, config_file: Path) -> None:
    """The command's process ends as soon as its output is flushed (`quick_exit`): no exit
    handler runs after it, its output is the in-process run's, it exits 0; the process of a
    test, which lives on, is left with the collector on and nothing frozen. A failing command
    still exits through the interpreter, with its code."""
    import gc

    args = ["backtest", "--data", str(store), "--config", str(config_file), "--from", str(START), "--json"]
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handlers ran', file=sys.stderr))\n"
        "sys.argv = ['hotcoin', *sys.argv[1:]]\n"
        "from hotcoin_tui.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "exit handlers ran" not in done.stderr
    code, out, err = invoke(*args)
    assert code == 0, err
    assert gc.get_freeze_count() == 0  # this process goes on: nothing frozen, cycles still collected
    assert gc.isenabled()
    mine, theirs = json.loads(done.stdout), json.loads(out)
    for doc in (mine, theirs):  # what the run's id and its timing make differ
        del doc["run_id"], doc["wall_s"]
        for trade in doc["trades"]:
            del trade["trace_id"]
    assert mine == theirs
    failed = subprocess.run([sys.executable, "-c", probe, *args[:-3], "--from", "nonsense"], capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 2 and "exit handlers ran" in failed.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_runs_uncollected_and_leaves_what_it_loaded_frozen(enabled: bool) -> None:
    """While a command loads (`loading_uncollected`) no cyclic collection runs; afterwards what
    it made is frozen and the collector is as it was: on where it was on, off where it was off."""
    import gc

    from hotcoin_tui.commands.backtest_cmd import loading_uncollected

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with loading_uncollected():
            assert not gc.isenabled()
            loaded: list[object] = []
            loaded.append(loaded)  # a cycle made while loading
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("setting", [None, "2"])
def test_numpy_loads_with_one_blas_thread_unless_the_user_says(setting: str | None) -> None:
    """`single_threaded_blas` loads numpy with OpenBLAS on one thread (no second thread in the
    process), the variable gone again afterwards; a user's own OPENBLAS_NUM_THREADS is kept."""
    probe = (
        "import os, sys\n"
        "from hotcoin_tui.commands.backtest_cmd import single_threaded_blas\n"
        "assert 'numpy' not in sys.modules\n"
        "single_threaded_blas()\n"
        "print('numpy' in sys.modules, len(os.listdir('/proc/self/task')), os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if setting is not None:
        env["OPENBLAS_NUM_THREADS"] = setting
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    loaded, threads, left = done.stdout.split()
    assert left == str(setting)
    if setting is None:
        assert (loaded, threads) == ("True", "1")
    else:
        assert loaded == "False"  # the user's setting: numpy loads as it would anyway, later


def test_backtest_progress_goes_to_stderr_and_leaves_the_json_clean(store: Path, config_file: Path) -> None:
    args = ("backtest", "--data", str(store), "--config", str(config_file), "--from", str(START), "--json")
    result = runner.invoke(app, [*args, "--progress"], env={"COLUMNS": "200", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert result.exit_code == 0, result.stderr
    assert "replay 2021-04-17" in result.stderr and "trades" in result.stderr
    code, quiet, err = invoke(*args, "--no-progress")
    assert code == 0 and "replay 20" not in err
    def trades(doc: str) -> list[tuple[str, int, float]]:  # trace ids differ: each run draws its run id
        return [(t["symbol"], t["opened_ms"], t["pnl"]) for t in json.loads(doc)["trades"]]

    assert trades(result.stdout) == trades(quiet) != []


def test_backtest_progress_forced_without_a_terminal_prints_lines_on_stderr(store: Path, config_file: Path) -> None:
    """`--progress` into a log file or a pipe printed nothing at all (rich's bar is transient,
    and draws only on a terminal): now a line each report, on stderr; stdout is the JSON alone."""
    args = ["backtest", "--data", str(store), "--config", str(config_file), "--from", str(START), "--json", "--progress"]
    result = runner.invoke(app, args, env={"COLUMNS": "200", "TTY_COMPATIBLE": "0"})  # stderr is no terminal
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    lines = re.findall(r"^replay (\d{4}-\d\d-\d\d \d\d:\d\d) UTC: (\d+)% done, (\d+) trades, \d+ s$", result.stderr, re.M)
    assert "replay: loading candles, warming up" in result.stderr and len(lines) >= 3, result.stderr
    assert lines[-1][1:] == ("100", str(len(doc["trades"])))
    assert "\x1b" not in result.stderr


def test_backtest_terminal_report_and_replay_of_a_trade(store: Path, config_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "bt.sqlite"
    code, out, err = invoke(
        "backtest", "--data", str(store), "--config", str(config_file), "--from", "2021-04-17T00:30",
        "--journal", str(journal),
    )  # fmt: skip
    assert code == 0, err
    parts = (
        "trades (", "PUMP/USDT", "equity", "total return", "profit factor", "max drawdown", "exits", "median held",
        "market (hold all)", "market (BTC/USDT)", "hotcoin replay",
    )  # fmt: skip
    for part in parts:
        assert part in out
    code, out, err = invoke("backtest", "--data", str(store), "--config", str(config_file), "--json", "--journal", str(journal))
    assert (code, out) == (2, "") and f"journal {journal} already holds events" in err  # each backtest a file of its own
    second = tmp_path / "bt2.sqlite"
    code, out, err = invoke("backtest", "--data", str(store), "--config", str(config_file), "--json", "--journal", str(second))
    trace = json.loads(out)["trades"][0]["trace_id"]
    code, out, err = invoke("replay", trace, "--journal", str(second))
    assert code == 0, err
    assert "ENTERED" in out and "fill buy" in out


def test_backtest_always_says_which_model_it_runs_with(store: Path, config_file: Path, tmp_path: Path) -> None:
    """No model, or one refused: said on stderr either way (a refusal in red), where only a
    loaded model used to be, so a replay on rules alone never passes for one with the model."""
    args = ["backtest", "--data", str(store), "--config", str(config_file), "--from", str(START), "--to", str(START + 20 * MIN), "--json"]
    env = {"COLUMNS": "200", "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "models")}
    (tmp_path / "models").mkdir()
    none = runner.invoke(app, args, env=env)
    assert none.exit_code == 0, none.stderr
    assert f"model: no hot_lgbm_1m model in {tmp_path / 'models'}; the engine runs on its rules alone" in none.stderr
    typo = runner.invoke(app, args, env={**env, "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "modles")}, color=True)
    assert typo.exit_code == 0, typo.stderr
    line = next(x for x in typo.stderr.splitlines() if "model:" in x)
    assert line.startswith(f"\x1b[31mmodel: model registry {tmp_path / 'modles'} (ml.registry_dir) does not exist")
    register_unloadable(tmp_path / "models", tmp_path, listing_min_bars=15)
    refused = runner.invoke(app, args, env=env, color=True)
    assert refused.exit_code == 0, refused.stderr
    line = next(x for x in refused.stderr.splitlines() if "model:" in x)
    assert line.startswith("\x1b[31mmodel: REFUSED hot_lgbm_1m@v0001 refused: model format 'torch_state_dict'")
    assert "rules alone" in line
    # Trained under another listing_min_bars than the config's: refused for that, with both fixes.
    other = runner.invoke(app, args, env={**env, "HOTCOIN_TRADING__SIGNALS__LISTING_MIN_BARS": "10"}, color=True)
    assert other.exit_code == 0, other.stderr
    line = next(x for x in other.stderr.splitlines() if "model:" in x)
    assert line.startswith(
        "\x1b[31mmodel: REFUSED hot_lgbm_1m@v0001 refused: trained with trading.signals.listing_min_bars = 15, this "
        "engine runs with 10"
    )
    assert "set trading.signals.listing_min_bars = 15, or retrain it under listing_min_bars = 10" in line
    assert "rules alone" in line


@pytest.mark.parametrize("columns", [80, 200])
def test_backtest_trades_table_fits_the_terminal(store: Path, config_file: Path, columns: int) -> None:
    """At 80 columns the table drops quantity and prices and cuts the trace id to a prefix that
    `hotcoin replay` accepts, instead of cutting every cell to an ellipsis; wide, it shows all."""
    code, out, err = invoke("backtest", "--data", str(store), "--config", str(config_file), "--json")
    assert code == 0, err
    trades = json.loads(out)["trades"]
    code, out, err = invoke("backtest", "--data", str(store), "--config", str(config_file), "--no-chart", columns=columns)
    assert code == 0, err
    table = out[out.index("trades (") : out.index("metrics")]
    assert "…" not in table
    assert all(len(line) <= columns for line in table.splitlines())
    lines = table.splitlines()
    header = next(line for line in lines if "opened UTC" in line)
    rows = [line.split() for line in lines if any(t["symbol"] in line.split() for t in trades)]
    assert [row[3] for row in rows] == [t["symbol"] for t in trades]  # opened (2 cells), held, symbol
    traces = [row[-1] for row in rows]  # each run has its own run id, so its own trace ids
    if columns == 80:
        assert "qty" not in header and "entry" not in header
        assert all(len(trace) == 12 for trace in traces)
    else:
        assert {"qty", "entry", "exit", "reason"} <= set(header.split())
        assert all(len(trace) == 16 for trace in traces)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeframe", "5m"], "1m"),
        (["--from", "2020-01-01"], "before the first candle"),
        (["--from", "yesterday"], "is not a time"),
        # were an OSError (errno 75) traceback from the C library in the replay
        (["--from", "99999999999999999999", "--to", "99999999999999999999"], "--from '99999999999999999999' is not a time between 1970 and 9999"),
        (["--to", "0001-01-01"], "--to '0001-01-01' is not a time between 1970 and 9999"),
    ],
    ids=["timeframe", "before-data", "bad-time", "epoch-past-9999", "before-1970"],
)
def test_backtest_user_errors_exit_2(store: Path, config_file: Path, args: list[str], message: str) -> None:
    code, _, err = invoke("backtest", "--data", str(store), "--config", str(config_file), *args)
    assert code == 2
    assert message in err


def test_backtest_needs_a_data_dir(config_file: Path) -> None:
    code, _, err = invoke("backtest", "--config", str(config_file))
    assert code == 2 and "--data" in err


@pytest.fixture
def sim_exchange() -> Iterator[SimExchangeServer]:
    """The sim exchange on its own loop in a thread (the command runs its own asyncio.run)."""
    source = FakeMarketSource({"BTC/USDT": 60_000.0, "DOGE/USDT": 0.3})
    source.advance_to(T0 + 86_400_000 + 30_000)
    with _sim_in_thread(source) as server:
        yield server


@contextlib.contextmanager
def _sim_in_thread(source: FakeMarketSource) -> Iterator[SimExchangeServer]:
    """A sim exchange serving `source`, on its own loop in a thread, for a command in this
    process (which runs its own asyncio.run) or in another."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: list[SimExchangeServer] = []

    async def serve() -> None:
        async with running_sim_exchange(source, speed=1.0) as server:
            box.append(server)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    ready.wait(10)
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_collect_command(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--no-progress")
    assert code == 0, err
    assert "collected 1,440 candles for 1 symbol(s)" in out
    series = HistoryStore(out_dir).read("DOGE/USDT", "1m")
    assert series.last_ms == T0 + 86_400_000 - MIN
    code, out, err = invoke(*args)  # resumed: nothing new yet, progress bar on
    assert code == 0, err
    assert "collected 0 candles" in out


def test_collect_progress_into_a_log_is_plain_lines_as_it_goes(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    """With stderr no terminal (a log, a pipe, a cron job), the progress bar drew nothing until
    the end; now each symbol's progress is plain lines: its start, each tenth it passes, its end."""
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt,btc/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--progress")
    assert code == 0 and "collected 2,880 candles for 2 symbol(s)" in out, err
    assert err.splitlines() == [
        "collect DOGE/USDT: 1,440 candles to download",
        "collect DOGE/USDT: 1,000 of 1,440 candles (69%)",  # a page of 1,000 candles, then the rest
        "collect DOGE/USDT: done, 1,440 candles",
        "collect BTC/USDT: 1,440 candles to download",
        "collect BTC/USDT: 1,000 of 1,440 candles (69%)",
        "collect BTC/USDT: done, 1,440 candles",
    ]


def test_collect_takes_a_pair_written_together(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "dogeusdt", "--days", "1"]
    code, out, err = invoke(*args, "--no-progress")
    assert code == 0 and "collected 1,440 candles for 1 symbol(s)" in out, err
    assert HistoryStore(out_dir).symbols("1m") == ["DOGE/USDT"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param(["--symbols", ","], r"',' names no pair; give e.g. DOGE/USDT,BTC/USDT, or leave --symbols out", id="empty-symbols"),
        pytest.param(["--out", "{file}"], r"{file} is a file; --out takes the store folder", id="out-is-a-file"),
    ],
)
def test_collect_refuses_a_slip_before_downloading(
    sim_exchange: SimExchangeServer, tmp_path: Path, given: list[str], message: str
) -> None:
    """`--symbols ","` used to download the 30 biggest movers, and `--out` naming a file crashed
    with FileExistsError after the download; both are now refused first, with the fix."""
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    args = {"--out": str(tmp_path / "data"), "--symbols": "doge/usdt"}
    args.update(dict(zip(given[::2], (g.format(file=file) for g in given[1::2]), strict=True)))
    code, _, err = invoke("collect", *itertools.chain(*args.items()), "--endpoint", sim_exchange.base_url, "--days", "1", "--no-progress")
    assert code == 2 and re.search(message.format(file=re.escape(str(file))), " ".join(err.replace("│", " ").split())), err
    assert file.read_text() == "mine" and not list((tmp_path / "data").glob("*.parquet"))


def test_a_collect_refused_for_its_config_makes_no_folder(tmp_path: Path) -> None:
    """The store folder was made before the config was read: a bad config left an empty
    folder behind. It is made once the config is known good."""
    bad = tmp_path / "config.toml"
    bad.write_text('[exchange]\nname = "sim"\n')  # the sim exchange, with no endpoint to reach it at
    code, _, err = invoke("collect", "--out", str(tmp_path / "data"), "--symbols", "doge/usdt", "-c", str(bad), "--no-progress")
    assert code == 2 and "exchange.endpoint is unset" in err, err
    assert not (tmp_path / "data").exists()


def test_a_collect_into_a_folder_it_cannot_make_is_refused_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.engine.config.test_locations import deny_writes_in

    deny_writes_in(monkeypatch, tmp_path)
    code, _, err = invoke("collect", "--out", str(tmp_path / "data" / "1m"), "--symbols", "doge/usdt", "--no-progress")
    assert code == 2, err
    assert f"{tmp_path}/data/1m cannot be created: {tmp_path} is not writable; pick a folder you can write" in " ".join(
        err.replace("│", " ").split()
    ), err
    assert not (tmp_path / "data").exists()


def test_collect_retries_a_server_error_and_says_so_on_stderr(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    """One 502 used to end `collect` with exit 2; now it is retried, with a line on stderr
    (even without the progress bar) saying how long it waits and why."""
    sim_exchange.faults.fail_with_5xx(1, [502])
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--no-progress")
    assert code == 0, err
    assert "collected 1,440 candles" in out and "1 failed and retried" in out
    assert re.search(r"^collect: waiting 0\.5 s: \w+: ExchangeNotAvailable: .* 502 Bad Gateway \(retry 1 of 8\)$", err, re.M), err


def test_collect_waits_the_servers_retry_after_and_logs_each_wait(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    """A 429 burst used to sit out the live engine's 60 + 120 s in silence under --no-progress:
    now each wait is the server's Retry-After (1 s here), one line each on stderr."""
    sim_exchange.faults.update({"rate_limit_burst": 2, "retry_after_s": 1})
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--no-progress")
    assert code == 0, err
    assert "collected 1,440 candles" in out and "2 rate-limited" in out
    waits = re.findall(r"^collect: waiting (\S+) s: \w+: DDoSProtection; silent for 1 s \(retry (\d) of 8\)$", err, re.M)
    assert waits == [("1.0", "1"), ("1.0", "2")], err


@pytest.mark.parametrize(
    ("stop", "code", "first"),
    [
        pytest.param(KeyboardInterrupt(), 130, [], id="ctrl-c"),
        pytest.param(None, 2, ["hotcoin: fetch_candles: ExchangeNotAvailable: 503 Service Unavailable"], id="gave-up"),
    ],
)
def test_a_collect_that_stops_says_what_is_stored_and_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: BaseException | None, code: int, first: list[str]
) -> None:
    """Ctrl-C exited 130 with no output, and giving up after the retries printed only the last
    error: now both say what each symbol has stored (range, count, added by this run) and that
    re-running resumes."""
    import engine.backtest.api as api
    from engine.errors import RetryableOrderError

    out_dir = tmp_path / "data"

    async def stopping(*args: object) -> None:
        report = args[-1]
        report.symbols = ["DOGE/USDT", "XRP/USDT"]  # type: ignore[attr-defined]
        HistoryStore(out_dir).append("DOGE/USDT", "1m", [Candle("DOGE/USDT", "1m", T0 + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(3)])
        report.written = {"DOGE/USDT": 3, "XRP/USDT": 0}  # type: ignore[attr-defined]
        raise stop or RetryableOrderError("fetch_candles: ExchangeNotAvailable: 503 Service Unavailable")

    monkeypatch.setattr(api, "run_collect", stopping)
    got, _, err = invoke("collect", "--out", str(out_dir), "--endpoint", "http://127.0.0.1:9", "--symbols", "doge/usdt,xrp/usdt", "--no-progress")
    assert got == code, err
    assert err.splitlines() == [
        *first,
        f"collect {'interrupted' if code == 130 else 'stopped'}; {out_dir} keeps what was stored:",
        "  DOGE/USDT: 3 candles, 2021-04-16 00:00:00 UTC to 2021-04-16 00:02:00 UTC (3 added by this run)",
        "  XRP/USDT: nothing (0 added by this run)",
        "re-run the same command to resume: it downloads only what is missing",
    ]


def test_a_collect_the_disk_cannot_take_says_which_file_why_and_what_is_kept(
    sim_exchange: SimExchangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (or EFBIG) during a write crashed `collect` with a 69-line pyarrow traceback.
    Now it is one line naming the file and the OS's reason, then what each symbol has stored
    and that re-running resumes, exit 2, as for any other stop."""
    import errno

    import pyarrow.parquet as pq  # history imports it where it writes (a cached read never does)

    real = pq.write_table

    def full_for_btc(table: object, where: str, **kwargs: object) -> None:
        if "BTC_USDT" in Path(where).name:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        real(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_for_btc)
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt,btc/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--no-progress")
    btc = out_dir / "BTC_USDT-1m.parquet"
    assert code == 2 and out == "", err
    assert err.splitlines() == [
        f"hotcoin: cannot write {btc} (No space left on device); {btc} was not made",
        f"collect stopped; {out_dir} keeps what was stored:",
        "  DOGE/USDT: 1,440 candles, 2021-04-16 00:00:00 UTC to 2021-04-16 23:59:00 UTC (1,440 added by this run)",
        "  BTC/USDT: nothing (0 added by this run)",
        "re-run the same command to resume: it downloads only what is missing",
    ]


class _HangAfterTwoPages(FakeMarketSource):
    """Serves two pages of 1m candles, then hangs the next request (`faults.hang`): a collect
    caught mid-download, its pages in memory, not written yet."""

    server: SimExchangeServer | None = None
    pages = 0

    def klines(self, symbol: str, timeframe: str, **kwargs: object) -> list[Candle]:
        if timeframe == "1m" and kwargs.get("start_ms") is not None:
            self.pages += 1
            if self.pages == 2 and self.server is not None:
                self.server.faults.hang(1, 60.0)
        return super().klines(symbol, timeframe, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_collect_stopped_by_sigterm_or_sighup_writes_what_came_and_says_so(tmp_path: Path, how: str) -> None:
    """SIGTERM (kill, a service stop) or SIGHUP (an SSH session that dropped) ended `collect`
    at once: exit -15 or -1, nothing printed, the candles downloaded but not written yet lost.
    Each now stops it as Ctrl-C (SIGINT, checked alongside) does: what came is written, the
    summary says what is stored and that re-running resumes, exit 128 + the signal."""
    source = _HangAfterTwoPages({"DOGE/USDT": 0.3})
    source.advance_to(T0 + 14 * 86_400_000 + 30_000)
    out_dir = tmp_path / "data"
    errors = tmp_path / "stderr"
    with _sim_in_thread(source) as sim, errors.open("w") as sink:
        source.server = sim
        cmd = [
            sys.executable, "-m", "hotcoin_tui.cli", "collect", "--out", str(out_dir), "--endpoint", sim.base_url,
            "--symbols", "doge/usdt", "--days", "14", "--no-progress",
        ]  # fmt: skip
        env = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "200"}
        collect = subprocess.Popen(cmd, cwd=Path(__file__).parents[2], env=env, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            deadline = time.monotonic() + 60
            while source.pages < 2 or sim.faults.plan.hang_requests:  # the third page asked, and hanging
                assert collect.poll() is None and time.monotonic() < deadline, errors.read_text()
                time.sleep(0.05)
            collect.send_signal(getattr(signal, how))
            collect.wait(timeout=30)
        finally:
            if collect.poll() is None:
                collect.kill()
                collect.wait()
    err = errors.read_text()
    assert collect.returncode == 128 + getattr(signal, how), err
    assert err.splitlines() == [
        f"collect interrupted; {out_dir} keeps what was stored:",
        "  DOGE/USDT: 2,000 candles, 2021-04-16 00:00:00 UTC to 2021-04-17 09:19:00 UTC (2,000 added by this run)",
        "re-run the same command to resume: it downloads only what is missing",
    ]
    assert HistoryStore(out_dir).read("DOGE/USDT", "1m").gaps() == []


def test_optimize_walk_forward_with_shared_storage(store: Path, config_file: Path, tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    best = tmp_path / "best.toml"
    result = runner.invoke(
        app,
        [
            "optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "2",
            "--jobs", "2", "--folds", "1", "--storage", f"sqlite:///{db}", "--out", str(best), "--json", "--progress",
        ],
        env={"COLUMNS": "200", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)  # the terminal's colours and cursor moves
    assert "fold 1/1 in sample" in bar and "2/2 trials" in bar  # the worker processes' trials, counted
    assert "fold 1/1 out-of-sample backtest" in bar and "best in sample +" in bar
    doc = json.loads(result.stdout)  # the bar went to stderr: stdout is the JSON alone
    (fold,) = doc["folds"]
    assert fold["trials"] == 2
    assert fold["in_sample"][1] == fold["out_of_sample"][0]
    assert isinstance(fold["base_out_of_sample_return"], float) and isinstance(fold["base_out_of_sample_trades"], int)
    assert isinstance(fold["in_sample_trades"], int)
    assert db.is_file()
    written = tomllib.loads(best.read_text())
    assert written["trading"]["signals"]["min_heat"] == doc["best_params"]["min_heat"]
    cfg = load_config(best).config  # the written file is a whole config: base settings plus the best
    assert cfg.trading.exits.max_hold_ms == int(doc["best_params"]["max_hold_min"]) * MIN
    assert cfg.discovery.windows.slot_ms == 60_000  # from --config, kept
    # a second run joins the same study in the same storage
    code, out, err = invoke(
        "optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "1",
        "--jobs", "1", "--folds", "1", "--storage", f"sqlite:///{db}", "--out", str(best),
    )  # fmt: skip
    assert code == 0, err
    assert "walk-forward" in out and "best parameters written" in out
    # Whether any of the three sampled trials traded in this short window is the sampler's draw:
    # the verdict says which (`test_optimize.py` holds each wording to its case).
    assert "base OOS" in out and ("beat the base config in" in out or "no trial traded in sample" in out)
    assert "fold 1/1" not in err  # no terminal, no bar


def test_optimize_writes_the_settings_the_environment_gave_the_search(store: Path, config_file: Path, tmp_path: Path) -> None:
    """A search under HOTCOIN_TRADING__CAPITAL__PROFILE=full wrote a best config from the file
    alone: `backtest --config best.toml` then ran the starter profile (capital 100, not 500)
    and did not reproduce the out-of-sample figure the search reported. Now the file holds the
    environment's trading settings, says which they were, and leaves machine settings out."""
    best = tmp_path / "best.toml"
    env = {"COLUMNS": "200", "HOTCOIN_TRADING__CAPITAL__PROFILE": "full", "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "models")}
    result = runner.invoke(
        app,
        [
            "optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "1",
            "--jobs", "1", "--folds", "1", "--out", str(best), "--json", "--no-progress",
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (fold,) = json.loads(result.stdout)["folds"]
    text = best.read_text()
    assert '#   trading.capital.profile = "full"  (HOTCOIN_TRADING__CAPITAL__PROFILE)' in text.splitlines()
    assert "registry_dir" not in text  # where the machine keeps its models: not a trading setting
    assert load_config(best, env={}).config.trading.capital.profile == "full"
    start, end = fold["out_of_sample"]
    replayed = runner.invoke(
        app,
        ["backtest", "--data", str(store), "--config", str(best), "--from", str(start), "--to", str(end), "--json"],
        env={"COLUMNS": "200", "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "models")},
    )
    assert replayed.exit_code == 0, replayed.stderr
    metrics = json.loads(replayed.stdout)["metrics"]
    assert (metrics["total_return"], metrics["trades"]) == (pytest.approx(fold["out_of_sample_return"]), fold["out_of_sample_trades"])
    assert metrics["final_equity"] == pytest.approx(500.0 * (1 + fold["out_of_sample_return"]))


def _replayed(store: Path, config: Path, window: list[int], env: dict[str, str]) -> tuple[float, int]:
    args = ["backtest", "--data", str(store), "--config", str(config), "--from", str(window[0]), "--to", str(window[1]), "--json"]
    result = runner.invoke(app, args, env={"COLUMNS": "200", **env})
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    return metrics["total_return"], metrics["trades"]


def test_optimize_trades_with_the_registered_model_as_backtest_does(store: Path, config_file: Path, tmp_path: Path) -> None:
    """`backtest` (and `run`) trade with the registry's production model; `optimize` ran every
    trial and both out-of-sample runs on the rules alone, so best.toml's figures were not what
    `backtest --config best.toml` gave (+1.239 % reported, +0.968 % replayed on real data).
    Now the search loads the model as `backtest` does, hands it to its worker processes, and
    says which it used: every figure it reports is the backtest's."""
    models = tmp_path / "models"
    register_booster(models, tmp_path / "work", feature="vol_ratio_20", cut=3.0, spread=3.0)  # blocks some entries
    env = {"HOTCOIN_ML__REGISTRY_DIR": str(models)}
    best = tmp_path / "best.toml"
    result = runner.invoke(
        app,
        [
            "optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "2",
            "--jobs", "2", "--folds", "1", "--out", str(best), "--json", "--no-progress",
        ],
        env={"COLUMNS": "200", **env},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "model: hot_lgbm_1m@v0001#" in result.stderr and "in production" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"].startswith("hot_lgbm_1m@v0001#") and doc["model_mode"] == "production"
    (fold,) = doc["folds"]
    searched = _replayed(store, best, fold["in_sample"], env)  # the best trial ran in a worker process
    assert searched == (pytest.approx(fold["in_sample_return"]), fold["in_sample_trades"])
    oos = _replayed(store, best, fold["out_of_sample"], env)
    assert oos == (pytest.approx(fold["out_of_sample_return"]), fold["out_of_sample_trades"])
    base = _replayed(store, config_file, fold["out_of_sample"], env)
    assert base == (pytest.approx(fold["base_out_of_sample_return"]), fold["base_out_of_sample_trades"])
    # The model decides here: on the rules alone the best parameters trade otherwise in sample.
    assert _replayed(store, best, fold["in_sample"], {"HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "none")}) != searched
    code, out, _ = invoke(  # the table says it too
        "optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "1",
        "--jobs", "1", "--folds", "1", "--out", str(tmp_path / "rules.toml"), "--no-progress",
    )  # fmt: skip
    assert code == 0 and "model: none; every backtest of the search ran on the rules alone" in out


def _descendants(pid: int) -> set[int]:
    """Every live process under `pid` (Linux: /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found.update(children)
        todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _trial_states(db: Path) -> list[str]:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return [state for (state,) in conn.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # not created yet
        return []


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux) to find the search's worker processes")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "Ctrl-C"])
def test_an_interrupted_search_leaves_no_worker_no_running_trial_and_no_temporary_folder(
    store: Path, config_file: Path, tmp_path: Path, how: str
) -> None:
    """SIGTERM to the search (or SIGHUP, an SSH session closing) ended the parent alone: its
    worker processes (~370 MB each) ran on for good, the trials it had asked stayed RUNNING in
    --storage (a resume counted them), its /tmp/hotcoin-optuna-* folder stayed, and Ctrl-C said
    nothing of what was kept. Now each stops the search as Ctrl-C does, cleanly."""
    db, temporary = tmp_path / "study.db", tmp_path / "tmp"
    temporary.mkdir()
    cmd = [
        sys.executable, "-m", "hotcoin_tui.cli", "optimize", "--data", str(store), "--config", str(config_file),
        "--from", str(START), "--trials", "8", "--jobs", "2", "--folds", "2", "--storage", f"sqlite:///{db}",
        "--out", str(tmp_path / "best.toml"), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(temporary), "COLUMNS": "200"}
    errors = tmp_path / "stderr"  # a file, not a pipe: a worker left running would hold a pipe open
    with errors.open("w") as sink:
        search = subprocess.Popen(
            cmd, cwd=Path(__file__).parents[2], env=env, stdout=subprocess.DEVNULL, stderr=sink,
            start_new_session=True,  # its own process group, as a terminal's foreground job is
        )  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not (len(workers := _descendants(search.pid)) >= 2 and "RUNNING" in _trial_states(db)):
            assert search.poll() is None and time.monotonic() < deadline, errors.read_text()
            time.sleep(0.2)
        assert any(temporary.glob("hotcoin-optuna-*"))
        if how == "Ctrl-C":  # the terminal sends it to the whole process group
            os.killpg(search.pid, signal.SIGINT)
        else:
            os.kill(search.pid, getattr(signal, how))
        search.wait(timeout=60)
        err = errors.read_text()
        signum = signal.SIGINT if how == "Ctrl-C" else getattr(signal, how)
        assert search.returncode == 128 + signum, err
        deadline = time.monotonic() + 5  # gone with the search, not orphaned (reaped, or a zombie init reaps)
        while (left := {pid for pid in workers if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left
    finally:  # whatever failed, nothing this test started runs on
        with contextlib.suppress(ProcessLookupError):
            os.killpg(search.pid, signal.SIGKILL)
        search.wait()
    states = _trial_states(db)
    assert "RUNNING" not in states and "FAIL" in states
    assert not any(temporary.glob("hotcoin-optuna-*"))
    assert "Traceback" not in err
    assert "hotcoin: interrupted in fold 1 of 2;" in err and "run the same command again to resume" in err


def test_optimize_warns_beside_the_written_file_when_its_fold_searched_nothing(
    store: Path, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last fold's parameters are written even where no trial traded in its sample (never
    tried): "best parameters written" alone let the owner trade them as searched ones."""
    from engine.backtest import optimize as opt

    params = {"min_heat": 70.0, "max_hold_min": 90, "tp1_gain": 0.03, "tp1_fraction": 0.5, "tp2_extra": 0.04,
              "stop_loss": 0.05, "trailing_stop": 0.02, "exit_fade_ret_5": -0.04, "exit_upper_wick": 0.7}  # fmt: skip
    idle = opt.Fold(1, T0, T0 + 60 * MIN, T0 + 60 * MIN, T0 + 120 * MIN, params, 0.0, 0.0, 0, 2, 0.0, 0, 0, "hotcoin-fold1", 0)
    monkeypatch.setattr(opt, "walk_forward", lambda *_, **__: opt.OptimizeResult([idle]))
    best = tmp_path / "best.toml"
    args = ["optimize", "--data", str(store), "--config", str(config_file), "--out", str(best), "--no-progress"]
    code, out, err = invoke(*args)
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index(f"best parameters written to {best}")
    assert lines[at + 1] == "warning: fold 1, whose parameters are written, searched nothing: no trial traded in sample, so they are the first trial's, never tried; do not trade them as searched ones. Search a longer window, or with more --trials"
    code, out, err = invoke(*args, "--json")
    assert code == 0, err
    assert json.loads(out)["warning"].startswith("fold 1, whose parameters are written, searched nothing")


def test_optimize_checks_out_before_searching_and_makes_its_folder(store: Path, config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file" / "best.toml"  # a folder that cannot be made: a file is in the way
    args = ["optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "1", "--jobs", "1", "--folds", "1"]
    result = runner.invoke(app, [*args, "--out", str(blocked)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and not isinstance(result.exception, OSError)
    assert f"cannot write {blocked}" in result.stderr and "walk-forward" not in result.stdout  # refused before the search
    best = tmp_path / "new" / "folder" / "best.toml"
    code, out, err = invoke(*args, "--out", str(best))
    assert code == 0, err
    assert "best parameters written" in out and tomllib.loads(best.read_text())


def test_optimize_prints_the_results_when_the_file_cannot_be_written(
    store: Path, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be written after the search (disk full, folder removed) loses nothing printed."""
    from engine.backtest import optimize as opt

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(opt, "write_best", disk_full)
    best = tmp_path / "best.toml"
    args = ["optimize", "--data", str(store), "--config", str(config_file), "--from", str(START), "--trials", "1", "--jobs", "1", "--folds", "1"]
    result = runner.invoke(app, [*args, "--out", str(best)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    assert "walk-forward" in result.stdout and "trailing_stop" in result.stdout and "written" not in result.stdout
    assert f"cannot write {best} (No space left on device)" in result.stderr
    assert len([line for line in result.stderr.strip().splitlines() if not line.startswith("model: ")]) == 1


def test_backtest_timeframe_comes_from_the_config_file_unless_given(store: Path, tmp_path: Path) -> None:
    """`--timeframe` defaulted to "1m" and always overrode the file: backtest.timeframe = "5m"
    was never seen (here it is, and refused: the replay is minute-grained)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG + '[backtest]\ntimeframe = "5m"\n')
    code, _, err = invoke("backtest", "--data", str(store), "--config", str(cfg), "--from", str(START), "--json")
    assert code == 2 and "backtest.timeframe='5m'" in err
    code, _, err = invoke("backtest", "--data", str(store), "--config", str(cfg), "--to", str(START), "--timeframe", "1m", "--json")
    assert code == 0, err


def test_collect_timeframe_comes_from_the_config_file_unless_given(sim_exchange: SimExchangeServer, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[backtest]\ntimeframe = "5m"\n')
    out_dir = tmp_path / "data"
    args = ["collect", "--out", str(out_dir), "--endpoint", sim_exchange.base_url, "--symbols", "doge/usdt", "--days", "1"]
    code, out, err = invoke(*args, "--config", str(cfg), "--no-progress")
    assert code == 0, err
    assert "collected 288 candles for 1 symbol(s)" in out
    assert HistoryStore(out_dir).read("DOGE/USDT", "5m").last_ms == T0 + 86_400_000 - 5 * MIN
    code, out, err = invoke(*args, "--config", str(cfg), "--timeframe", "1m", "--no-progress")
    assert code == 0 and "collected 1,440 candles" in out, err


def _fake_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished one-fold search at once, for what `optimize` does after the search."""
    from engine.backtest import optimize as opt

    params = {"min_heat": 70.0, "max_hold_min": 90, "tp1_gain": 0.03, "tp1_fraction": 0.5, "tp2_extra": 0.04,
              "stop_loss": 0.05, "trailing_stop": 0.02, "exit_fade_ret_5": -0.04, "exit_upper_wick": 0.7}  # fmt: skip
    fold = opt.Fold(1, T0, T0 + 60 * MIN, T0 + 60 * MIN, T0 + 120 * MIN, params, 0.01, 0.01, 3, 2, 0.0, 2, 1, "hotcoin-fold1", 2)
    monkeypatch.setattr(opt, "walk_forward", lambda *_, **__: opt.OptimizeResult([fold]))


def test_optimize_writes_best_from_a_config_file_with_a_byte_order_mark(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader takes a config file saved with a UTF-8 byte-order mark; `optimize` re-read it
    with its own `tomllib` after the search and died with a traceback, printing nothing."""
    _fake_search(monkeypatch)
    config = tmp_path / "bom.toml"
    config.write_bytes(b"\xef\xbb\xbf" + CONFIG.encode() + b"[backtest]\noptimize_trials = 3\n")
    best = tmp_path / "best.toml"
    code, out, err = invoke("optimize", "--data", str(store), "--config", str(config), "--out", str(best), "--no-progress")
    assert code == 0, err
    assert "walk-forward" in out and f"best parameters written to {best}" in out
    written = tomllib.loads(best.read_text())
    assert written["backtest"]["optimize_trials"] == 3 and written["discovery"]["windows"]["capacity"] == 64
    assert load_config(best).config.trading.signals.min_heat == 70.0


def test_optimize_prints_the_results_when_the_best_config_cannot_be_made(
    store: Path, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config error after the search (a value that cannot be written as TOML) loses nothing
    printed either: the table first, then one line naming the file and why, exit 1."""
    from engine.backtest import optimize as opt
    from engine.errors import ConfigError

    def unwritable(*_: object) -> None:
        raise ConfigError("cannot write datetime.date(2021, 4, 2) (date) to TOML")

    _fake_search(monkeypatch)
    monkeypatch.setattr(opt, "write_best", unwritable)
    best = tmp_path / "best.toml"
    result = runner.invoke(app, ["optimize", "--data", str(store), "--config", str(config_file), "--out", str(best), "--no-progress"])
    assert result.exit_code == 1 and not isinstance(result.exception, ConfigError)
    assert "walk-forward" in result.stdout and "trailing_stop" in result.stdout and "written" not in result.stdout
    assert f"cannot write {best} (cannot write datetime.date(2021, 4, 2) (date) to TOML); the best parameters are printed above" in result.stderr
