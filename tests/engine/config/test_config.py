from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_load_without_any_file() -> None:
    loaded = load_config(env={})
    assert loaded.config.mode == "paper"
    assert loaded.config_file is None
    assert loaded.source_of("journal.batch_size") == "default"


def test_layers_override_in_order(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[journal]\nbatch_size = 10\nflush_interval_ms = 7\n[exchange]\nquote_asset = 'FDUSD'\n")
    loaded = load_config(
        cfg,
        env={"HOTCOIN_JOURNAL__BATCH_SIZE": "20", "HOTCOIN_EXCHANGE__QUOTE_ASSET": "BUSD"},
        cli={"exchange.quote_asset": "USDC"},
    )
    c = loaded.config
    assert (c.journal.flush_interval_ms, c.journal.batch_size, c.exchange.quote_asset) == (7, 20, "USDC")
    assert loaded.source_of("journal.flush_interval_ms") == f"file:{cfg}"
    assert loaded.source_of("journal.batch_size") == "env:HOTCOIN_JOURNAL__BATCH_SIZE"
    assert loaded.source_of("exchange.quote_asset") == "cli"


def test_xdg_default_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    write(tmp_path / "hotcoin" / "config.toml", "mode = 'paper'\nlog_level = 'DEBUG'\n")
    assert load_config(env={}).config.log_level == "DEBUG"


def test_journal_env_shortcut(tmp_path: Path) -> None:
    loaded = load_config(env={"HOTCOIN_JOURNAL": str(tmp_path / "j.sqlite")})
    assert loaded.config.journal_path == tmp_path / "j.sqlite"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[journal]\nbatch_siz = 3\n", r"journal.batch_siz \(from file:.*\): unknown key; did you mean 'journal.batch_size'"),
        ("[jounral]\nbatch_size = 3\n", r"jounral .*unknown key; did you mean 'journal'"),
        ("[journal]\nbatch_size = 'many'\n", r"journal.batch_size \(from file:.*\): Input should be a valid integer.*Fix: Events written"),
        ("[journal]\nbatch_size = 0\n", r"greater than or equal to 1"),
        ("mode = 'yolo'\n", r"mode .*'paper' or 'live'"),
        ("[journal\n", r"is not valid TOML"),
        ("[jounral]\nbatch_size = 3\n", r"jounral \(from file:.*\): unknown key"),
        ("[[trading.exits.take_profit]]\ngain = 0.1\n", r"take_profit.0.fraction \(from file:.*\): required but not set\. Fix: add fraction = \.\.\. \(Share.*\(required, no default\)\)$"),
        ("trading = 5\n", r"^invalid configuration:\n  trading \(from file:.*\): must be a \[trading\] table, not a value; got 5\. Fix: write \[trading\] with its keys \(see `hotcoin config show --doc`\)$"),
    ],
    ids=["typo-key", "typo-section", "wrong-type", "out-of-range", "bad-literal", "bad-toml", "unknown-section-origin", "missing", "value-for-section"],
)
def test_errors_name_key_file_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=expected):
        load_config(cfg, env={})


@pytest.mark.parametrize(
    ("cli", "expected"),
    [
        ({"gpu.h800.hots": "box"}, r"gpu.h800.hots \(from cli\): unknown key; did you mean 'gpu.h800.host'"),
        ({"gpu.h800.host": "box", "gpu.h800.port": "ssh"}, r"gpu.h800.port .*valid integer.*Fix: SSH port"),
    ],
    ids=["typo-in-profile", "bad-type-in-profile"],
)
def test_errors_inside_named_tables(cli: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(env={}, cli=cli)


def test_json_section_in_env_merges_with_the_file_and_records_each_leaf(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[exchange]\nquote_asset = 'FDUSD'\nrecv_window_ms = 7000\n")
    loaded = load_config(
        cfg, env={"HOTCOIN_EXCHANGE": '{"keepalive_ms": 20000, "recv_window_ms": 9000}', "HOTCOIN_EXCHANGE__RECV_WINDOW_MS": "8000"}
    )
    c = loaded.config.exchange
    assert (c.quote_asset, c.keepalive_ms, c.recv_window_ms) == ("FDUSD", 20000, 8000)  # the more specific variable wins
    assert loaded.source_of("exchange.quote_asset") == f"file:{cfg}"
    assert loaded.source_of("exchange.keepalive_ms") == "env:HOTCOIN_EXCHANGE"
    assert loaded.source_of("exchange.recv_window_ms") == "env:HOTCOIN_EXCHANGE__RECV_WINDOW_MS"


def test_empty_env_variable_counts_as_unset() -> None:
    loaded = load_config(env={"HOTCOIN_JOURNAL__BATCH_SIZE": "", "HOTCOIN_TRADING": "", "HOTCOIN_JOURNAL": ""})
    assert loaded.source_of("journal.batch_size") == "default"
    assert loaded.config.journal.path is None


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"exchange.recv_window_ms \(from env:HOTCOIN_EXCHANGE__RECV_WINDOW_MS\)"):
        load_config(env={"HOTCOIN_EXCHANGE__RECV_WINDOW_MS": "soon"})


def test_config_file_encoding(tmp_path: Path) -> None:
    """A BOM is accepted; Latin-1 bytes get one line naming the file and the fix, not a traceback."""
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"\xef\xbb\xbf[journal]\nbatch_size = 12\n")
    assert load_config(cfg, env={}).config.journal.batch_size == 12
    cfg.write_bytes("[exchange]\nquote_asset = 'USDT' # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {cfg} is not UTF-8 .*; re-save it as UTF-8"):
        load_config(cfg, env={})
    secrets = write(tmp_path / "s.toml", "")
    secrets.write_bytes(b"[exchange]\napi_key = '\xe9'\n")
    with pytest.raises(ConfigError, match=rf"secrets file {secrets} is not UTF-8"):
        load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets)})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="is a directory; --config/HOTCOIN_CONFIG takes a TOML file"):
        load_config(tmp_path, env={})  # audit: said "does not exist" of a directory
    with pytest.raises(ConfigError, match="config file /dev/null is not a regular file; --config/HOTCOIN_CONFIG takes"):
        load_config(Path("/dev/null"), env={})  # it exists: "does not exist" sent the owner looking for a typo


class TestSecrets:
    def test_secrets_file_loads_and_never_shows(self, tmp_path: Path) -> None:
        secrets = write(tmp_path / "s.toml", "[exchange]\napi_key = 'AKIA-123'\napi_secret = 'very-secret'\n")
        cfg = write(tmp_path / "c.toml", f"[paths]\nsecrets_file = '{secrets}'\n")
        c = load_config(cfg, env={}).config
        assert c.exchange.api_secret is not None
        assert c.exchange.api_secret.get_secret_value() == "very-secret"
        for text in (repr(c), str(c), str(c.redacted()), repr(c.exchange)):
            assert "very-secret" not in text and "AKIA-123" not in text
        assert c.redacted()["exchange"]["api_secret"] == "***"

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=["group", "others", "both"])
    def test_readable_secrets_file_is_refused(self, tmp_path: Path, mode: int) -> None:
        secrets = write(tmp_path / "s.toml", "[exchange]\napi_secret = 'x'\n", mode=mode)
        cfg = write(tmp_path / "c.toml", f"[paths]\nsecrets_file = '{secrets}'\n")
        with pytest.raises(ConfigError, match=rf"readable by group or others.*chmod 600 {secrets}"):
            load_config(cfg, env={})

    def test_a_secrets_file_that_is_a_directory_is_named_as_such(self, tmp_path: Path) -> None:
        """A directory there was refused as "readable by group or others (mode 0755) ... chmod 600"."""
        secrets = tmp_path / "secrets.toml"
        secrets.mkdir()
        with pytest.raises(ConfigError, match=rf"^secrets file {secrets} is a directory, not a file; remove it") as refused:
            load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets)})
        assert "chmod 600 " not in str(refused.value)

    def test_secret_in_main_config_is_refused(self, tmp_path: Path) -> None:
        cfg = write(tmp_path / "c.toml", "[exchange]\napi_secret = 'oops'\n", mode=0o644)
        with pytest.raises(ConfigError, match="secret and may not be set in the config file") as info:
            load_config(cfg, env={})
        assert "oops" not in str(info.value)

    def test_secret_on_command_line_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="may not be passed on the command line"):
            load_config(env={}, cli={"exchange.api_key": "k"})

    @pytest.mark.parametrize("value", ["[1, 2", '["s3cr3t-part"]'], ids=["unparsable", "wrong-type"])
    def test_bad_secret_value_is_not_echoed(self, value: str) -> None:
        with pytest.raises(ConfigError) as info:
            load_config(env={"HOTCOIN_EXCHANGE__API_SECRET": value})
        assert value not in str(info.value)
        assert "s3cr3t" not in str(info.value)

    @pytest.mark.parametrize(
        "text",
        ['[notify]\ntelegram = "12345:TGSECRET"\n', 'exchange = "TGSECRET"\n', '[notify]\nfeishu = ["TGSECRET"]\n'],
        ids=["string-for-table", "string-for-section", "list-for-table"],
    )
    def test_value_where_a_table_of_secrets_belongs_is_refused_unechoed(self, tmp_path: Path, text: str) -> None:
        cfg = write(tmp_path / "c.toml", text)
        with pytest.raises(ConfigError, match=r"must be a \[\w+(\.\w+)?\] table, not a value") as info:
            load_config(cfg, env={})
        assert "TGSECRET" not in str(info.value)

    @pytest.mark.parametrize(
        "env",
        [
            {"HOTCOIN_NOTIFY__TELEGRAM": '["TGSECRET"]'},
            {"HOTCOIN_NOTIFY__TELEGRAM": "12345:TGSECRET"},
            {"HOTCOIN_NOTIFY": '{"telegram": "12345:TGSECRET"}'},
        ],
        ids=["json-list", "plain", "nested-json"],
    )
    def test_env_value_where_a_table_of_secrets_belongs_is_refused_unechoed(self, env: dict[str, str]) -> None:
        with pytest.raises(ConfigError, match=r"notify.telegram from HOTCOIN_NOTIFY\w* must be a \[notify.telegram\] table") as info:
            load_config(env=env)
        assert "TGSECRET" not in str(info.value)

    def test_secrets_file_hint_names_the_secret_not_the_config_file(self, tmp_path: Path) -> None:
        secrets = write(tmp_path / "s.toml", "[notify]\ntelegram = '12345:TGSECRET'\n")
        with pytest.raises(ConfigError, match=r"must be a \[notify.telegram\] table.*bot_token") as info:
            load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets)})
        assert "TGSECRET" not in str(info.value) and "put it in the config file" not in str(info.value)
        write(secrets, "[exchange]\napi_secrte = 'x'\n")
        with pytest.raises(ConfigError, match=r"api_secrte, which is not a secret; did you mean 'exchange.api_secret'"):
            load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets)})

    def test_environment_beats_secrets_file(self, tmp_path: Path) -> None:
        secrets = write(tmp_path / "s.toml", "[exchange]\napi_key = 'file-key'\n")
        loaded = load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets), "HOTCOIN_EXCHANGE__API_KEY": "env-key"})
        assert loaded.config.exchange.api_key is not None
        assert loaded.config.exchange.api_key.get_secret_value() == "env-key"

    def test_environment_json_section_beats_secrets_file(self, tmp_path: Path) -> None:
        secrets = write(tmp_path / "s.toml", "[exchange]\napi_key = 'file-key'\napi_secret = 'file-secret'\n")
        loaded = load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets), "HOTCOIN_EXCHANGE": '{"api_key": "env-key"}'})
        ex = loaded.config.exchange
        assert ex.api_key is not None and ex.api_secret is not None
        assert (ex.api_key.get_secret_value(), ex.api_secret.get_secret_value()) == ("env-key", "file-secret")
        assert loaded.source_of("exchange.api_key") == "env:HOTCOIN_EXCHANGE"
        assert loaded.source_of("exchange.api_secret") == f"file:{secrets}"

    def test_non_secret_in_secrets_file_is_refused(self, tmp_path: Path) -> None:
        secrets = write(tmp_path / "s.toml", "mode = 'live'\n")
        with pytest.raises(ConfigError, match="which is not a secret"):
            load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(secrets)})


def test_config_hash_is_stable_and_ignores_secret_values() -> None:
    a = load_config(env={"HOTCOIN_EXCHANGE__API_KEY": "one"}).config.config_hash()
    b = load_config(env={"HOTCOIN_EXCHANGE__API_KEY": "two"}).config.config_hash()
    c = load_config(env={"HOTCOIN_JOURNAL__BATCH_SIZE": "3"}).config.config_hash()
    assert a == b != c


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[trading.signals]\nmax_ret_60 = nan\n", "trading.signals.max_ret_60"),
        ("[trading.execution]\nmax_order_quote = inf\n", "trading.execution.max_order_quote"),
        ("[trading.execution]\nmax_order_quote = -inf\n", "trading.execution.max_order_quote"),
    ],
    ids=["nan", "inf", "minus-inf"],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, text: str, key: str) -> None:
    """nan fails every comparison and inf passes every cap: either would switch a rule off unseen."""
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=rf"{key} \(from file:.*\): Input should be a finite number"):
        load_config(cfg, env={})


def test_home_is_expanded_in_every_path_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers and readers must agree: an unexpanded `~` made `hotcoin run` create ./~/..."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = write(
        tmp_path / "c.toml",
        "[paths]\ndata_dir = '~/data'\nsecrets_file = '~/s.toml'\n[journal]\npath = '~/j.sqlite'\n"
        "[backtest]\ndata_dir = '~/bt'\n[sim]\ndata_dir = '~/sim'\n[ml]\nregistry_dir = '~/models'\n"
        "[gpu.box]\nhost = 'h'\nidentity_file = '~/.ssh/id'\n",
    )
    c = load_config(cfg, env={}).config
    paths = [c.paths.data_dir, c.paths.secrets_file, c.journal_path, c.backtest.data_dir, c.sim.data_dir, c.ml.registry_dir,
             c.gpu["box"].identity_file]  # fmt: skip
    assert paths == [tmp_path / p for p in ("data", "s.toml", "j.sqlite", "bt", "sim", "models", ".ssh/id")]
    assert load_config(env={"HOTCOIN_JOURNAL": "~/e.sqlite"}).config.journal_path == tmp_path / "e.sqlite"


def test_config_is_frozen() -> None:
    c = load_config(env={}).config
    with pytest.raises(ValueError, match="frozen"):
        c.mode = "live"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "env", "got"),
    [
        ("[trading.risk]\nlevel_thresholds = [0.01, 0.02, 0.03]\n", {}, "got 3: [0.01, 0.02, 0.03]"),
        ("[trading.risk]\nlevel_thresholds = [0.01, 0.02, 0.03, 0.04, 0.05]\n", {}, "got 5: [0.01, 0.02, 0.03, 0.04, 0.05]"),
        ("", {"HOTCOIN_TRADING__RISK__LEVEL_THRESHOLDS": "[0.01, 0.02]"}, "got 2: [0.01, 0.02]"),
        ("", {"HOTCOIN_TRADING__RISK__LEVEL_THRESHOLDS": "0.01"}, "got '0.01', not a list"),
    ],
    ids=["three-in-file", "five-in-file", "two-in-env", "one-in-env"],
)
def test_a_list_of_the_wrong_length_says_how_many_values_and_how_to_write_them(
    tmp_path: Path, text: str, env: dict[str, str], got: str
) -> None:
    """Three level thresholds were reported as `level_thresholds.3 required but not set. Fix:
    add 3 = ...` (a key TOML cannot give a list) or `also set ..._LEVEL_THRESHOLDS__3` (which
    is refused): followed, both failed again."""
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env=env)
    origin = next(iter(env), None)
    lines = str(err.value).splitlines()
    assert lines[1:] == [
        f"  trading.risk.level_thresholds (from {f'env:{origin}' if origin else f'file:{cfg}'}): needs a list of 4 values, {got}. "
        "Fix: e.g. level_thresholds = [0.015, 0.03, 0.05, 0.08] in the file; in the environment a JSON list, "
        "HOTCOIN_TRADING__RISK__LEVEL_THRESHOLDS='[0.015, 0.03, 0.05, 0.08]' (Daily drawdown at which risk level L2, L3, L4, L5 "
        "begin. L2 halves sizes, L3 and L4 stop new entries, L5 asks the state machine for `blocked`.)"
    ]
    fixed = load_config(cfg, env={"HOTCOIN_TRADING__RISK__LEVEL_THRESHOLDS": "[0.015, 0.03, 0.05, 0.08]"})  # as the fix says
    assert fixed.config.trading.risk.level_thresholds == (0.015, 0.03, 0.05, 0.08)
