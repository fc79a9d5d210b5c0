"""Rules across settings, retired settings and the built-in capital profiles, as a user meets
them through `load_config`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from engine.config import SECRET_KEYS, load_config
from engine.config.loader import RETIRED
from engine.config.sections.discovery import AnomalySection, HeatSection, PoolSection
from engine.config.sections.trading import CapitalProfile, CapitalSettings
from engine.discovery.pipeline import Discovery
from engine.errors import ConfigError

BUILT_IN = CapitalSettings().profiles


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_built_in_profile_table_changes_only_the_keys_it_sets(tmp_path: Path) -> None:
    """Restating starter's own capital and max_concurrent dropped its min_heat 70 to the field
    default 0 and removed the growth and full profiles: a day's backtest went from 4 trades to 49."""
    cfg = write(tmp_path / "c.toml", "[trading.capital.profiles.starter]\ncapital = 100.0\nmax_concurrent = 2\n")
    assert load_config(cfg, env={}).config.trading.capital.profiles == BUILT_IN
    env = {"HOTCOIN_TRADING__CAPITAL__PROFILES__GROWTH__CAPITAL": "200", "HOTCOIN_TRADING__CAPITAL__PROFILE": "growth"}
    capital = load_config(env=env).config.trading.capital
    assert capital.active == CapitalProfile(capital=200.0, max_concurrent=3, min_heat=50.0)
    assert capital.profiles["starter"] == BUILT_IN["starter"] and capital.profiles["full"] == BUILT_IN["full"]


def test_a_new_profile_needs_its_required_keys_named_where_they_go(tmp_path: Path) -> None:
    env = {"HOTCOIN_TRADING__CAPITAL__PROFILES__MINE__CAPITAL": "200"}
    with pytest.raises(ConfigError) as err:
        load_config(env=env)
    assert (
        "trading.capital.profiles.mine.max_concurrent (table set by env:HOTCOIN_TRADING__CAPITAL__PROFILES__MINE__CAPITAL): "
        "required but not set. Fix: also set HOTCOIN_TRADING__CAPITAL__PROFILES__MINE__MAX_CONCURRENT"
    ) in str(err.value)
    cfg = write(tmp_path / "c.toml", "[trading.capital]\nprofile = 'mine'\n[trading.capital.profiles.mine]\ncapital = 50.0\n")
    with pytest.raises(ConfigError, match=r"profiles.mine.max_concurrent \(from file:.*\): required but not set\. Fix: add max_concurrent"):
        load_config(cfg, env={})
    mine = load_config(cfg, env={"HOTCOIN_TRADING__CAPITAL__PROFILES__MINE__MAX_CONCURRENT": "1"}).config.trading.capital
    assert mine.active == CapitalProfile(capital=50.0, max_concurrent=1) and set(mine.profiles) == {*BUILT_IN, "mine"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOTCOIN_STATE__STALE_DEGRADED_S": "400"}, "state.stale_degraded_s=400.0 exceeds state.stale_blocked_s=300.0"),
        ({"HOTCOIN_STATE__ORDER_ERRORS_BLOCKED": "2"}, "state.order_errors_degraded=3 exceeds state.order_errors_blocked=2"),
    ],
    ids=["stale", "order-errors"],
)
def test_a_degraded_threshold_above_its_blocked_one_is_refused(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env=env)
    message = str(err.value)
    assert f"(from env:{next(iter(env))}): {expected}: the engine would block without ever degrading first" in message
    assert "got {" not in message  # the rule's own words, not the table's input


def test_equal_degraded_and_blocked_thresholds_go_straight_to_blocked() -> None:
    state = load_config(env={"HOTCOIN_STATE__STALE_DEGRADED_S": "300", "HOTCOIN_STATE__ORDER_ERRORS_DEGRADED": "10"}).config.state
    assert (state.stale_degraded_s, state.order_errors_degraded) == (300.0, 10)


def test_backtest_history_longer_than_the_candle_ring_is_refused_at_load() -> None:
    """It crashed the replay with `history of shape (1501, 33) does not fit 1500 minutes`."""
    with pytest.raises(ConfigError, match=r"^invalid configuration:\n  backtest.initial_history_minutes=1501 exceeds sim.candle_ring_minutes=1500"):
        load_config(env={"HOTCOIN_BACKTEST__INITIAL_HISTORY_MINUTES": "1501"})
    both = {"HOTCOIN_BACKTEST__INITIAL_HISTORY_MINUTES": "1501", "HOTCOIN_SIM__CANDLE_RING_MINUTES": "3000"}
    assert load_config(env=both).config.backtest.initial_history_minutes == 1501


def test_retired_anomaly_alert_settings_load_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An old config still setting the removed alert thresholds loads; the settings are named once."""
    cfg = write(tmp_path / "c.toml", "[discovery.anomaly]\nprice_z_alert = 3.0\nalert_cooldown_ms = 1000\nmin_history_slots = 30\n")
    with caplog.at_level(logging.WARNING, logger="hotcoin.config"):
        loaded = load_config(cfg, env={"HOTCOIN_DISCOVERY__ANOMALY__VOLUME_Z_ALERT": "2"})
    assert loaded.config.discovery.anomaly.min_history_slots == 30
    assert not any("alert" in key for key in loaded.sources)
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("config: ignored, as no longer used: discovery.anomaly.price_z_alert (from file:")
    assert "discovery.anomaly.volume_z_alert (from env:HOTCOIN_DISCOVERY__ANOMALY__VOLUME_Z_ALERT)" in message
    assert "alert_cooldown_ms" in message and message.endswith("Delete them from the config")
    caplog.clear()
    load_config(env={})
    assert not caplog.records
    assert {key.rsplit(".", 1)[1] for key in RETIRED}.isdisjoint(AnomalySection.model_fields)


def test_the_pool_bar_is_described_as_pacing_rank_acceleration_which_it_does() -> None:
    """`discovery.pool.bar_ms` was described as a journal setting only, yet heat's rank
    acceleration is measured bar to bar: changing it changes trades."""
    config = load_config(env={"HOTCOIN_DISCOVERY__POOL__BAR_MS": "120000"}).config
    assert Discovery(config.discovery, None).ranker.bar_ms == 120_000
    bar = PoolSection.model_fields["bar_ms"].description or ""
    weight = HeatSection.model_fields["w_rank_acceleration"].description or ""
    assert "rank acceleration" in bar and "changes heat and trades" in bar and "journal" in bar
    assert "pool.bar_ms" in weight


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("feishu.webhook_url", "ftp://x/hook/FSSECRET", "the webhook URL does not start with https://"),
        ("feishu.webhook_url", "127.0.0.1/open-apis/bot/v2/hook/FSSECRET", "the webhook URL does not start with https://"),
        ("feishu.webhook_url", " https://127.0.0.1/hook/FSSECRET", "the webhook URL contains spaces or a line break"),
        ("feishu.webhook_url", "https:///hook/FSSECRET", "the webhook URL has no host"),
        ("telegram.bot_token", "", "the bot token is empty"),
        ("telegram.bot_token", "123:TGSECRET\n", "the bot token contains spaces or a line break"),
        ("telegram.base_url", "api.telegram.org", "the Bot API base URL does not start with https://"),
    ],
    ids=["feishu-ftp", "feishu-no-scheme", "feishu-leading-space", "feishu-no-host", "tg-empty", "tg-newline", "tg-base-url"],
)
def test_a_notification_setting_no_channel_can_use_is_refused_at_load(tmp_path: Path, key: str, value: str, says: str) -> None:
    """The channel constructors raised ValueError on these at engine start: a traceback from
    `hotcoin run` (and from `hotcoin doctor` on an empty token) after `doctor` had passed them."""
    section, name = key.split(".")
    path = write(tmp_path / "notify.toml", f"[notify.{section}]\n{name} = {value!r}\n".replace("'", '"'))
    path.chmod(0o600)
    secret = name != "base_url"
    with pytest.raises(ConfigError) as err:
        load_config(None if secret else path, env={"HOTCOIN_PATHS__SECRETS_FILE": str(path)} if secret else {})
    message = str(err.value)
    assert f"notify.{key} (from file:{path}): Value error, {says}" in message
    assert "SECRET" not in message


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/open-apis/bot/v2/hook/abc", "http://127.0.0.1:8080/hook/abc", "HTTPS://127.0.0.1:8443/hook/abc"]
)
def test_a_webhook_url_any_channel_can_post_to_loads(url: str) -> None:
    from engine.ops.notify.factory import build_notifiers

    config = load_config(env={"HOTCOIN_NOTIFY__FEISHU__WEBHOOK_URL": url}).config
    assert [n.name for n in build_notifiers(config)] == ["feishu"]


def test_an_env_variable_sets_a_mixed_case_profile_of_the_file_under_its_own_spelling(tmp_path: Path) -> None:
    """A variable name is upper case: lowered whole, ..._PROFILES__MAIN__CAPITAL made a new
    profile `main` beside the file's `Main`, which kept its capital of 200, silently."""
    cfg = write(
        tmp_path / "c.toml",
        "[trading.capital]\nprofile = 'Main'\n[trading.capital.profiles.Main]\ncapital = 200\nmax_concurrent = 4\n",
    )
    env = {"HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__CAPITAL": "1000", "HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__MAX_CONCURRENT": "5"}
    loaded = load_config(cfg, env=env)
    capital = loaded.config.trading.capital
    assert capital.active == CapitalProfile(capital=1000.0, max_concurrent=5) and set(capital.profiles) == {*BUILT_IN, "Main"}
    assert loaded.source_of("trading.capital.profiles.Main.capital") == "env:HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__CAPITAL"
    gpu = write(tmp_path / "g.toml", "[gpu.BigBox]\nhost = 'box'\n")
    assert load_config(gpu, env={"HOTCOIN_GPU__BIGBOX__PORT": "2222"}).config.gpu["BigBox"].port == 2222
    # A name the file does not have is still a new, lower-case profile.
    assert "new" in load_config(cfg, env={**env, "HOTCOIN_TRADING__CAPITAL__PROFILES__NEW__CAPITAL": "9",
                                           "HOTCOIN_TRADING__CAPITAL__PROFILES__NEW__MAX_CONCURRENT": "1"}).config.trading.capital.profiles  # fmt: skip


def test_an_env_variable_matching_two_spellings_of_the_file_is_refused_naming_both(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        "[trading.capital.profiles.Main]\ncapital = 200\nmax_concurrent = 4\n"
        "[trading.capital.profiles.main]\ncapital = 300\nmax_concurrent = 4\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={"HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__CAPITAL": "1000"})
    assert str(err.value).startswith(
        "HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__CAPITAL matches both 'trading.capital.profiles.Main' and "
        "'trading.capital.profiles.main', which differ only in case"
    )
    assert "HOTCOIN_TRADING__CAPITAL__PROFILES='{\"Main\": ...}'" in str(err.value)
    # The JSON object the message offers sets the one meant.
    json_env = {"HOTCOIN_TRADING__CAPITAL__PROFILES": '{"Main": {"capital": 1000}}'}
    profiles = load_config(cfg, env=json_env).config.trading.capital.profiles
    assert (profiles["Main"].capital, profiles["main"].capital) == (1000.0, 300.0)


def test_an_env_variable_takes_the_spelling_a_broader_variables_json_gave() -> None:
    env = {
        "HOTCOIN_TRADING__CAPITAL__PROFILES": '{"Main": {"capital": 200}}',
        "HOTCOIN_TRADING__CAPITAL__PROFILES__MAIN__MAX_CONCURRENT": "4",
        "HOTCOIN_TRADING__CAPITAL__PROFILE": "Main",
    }
    assert load_config(env=env).config.trading.capital.active == CapitalProfile(capital=200.0, max_concurrent=4)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "[trading.capital]\nprofile = 'tiny'\n[trading.capital.profiles.tiny]\ncapital = 50\nmax_concurrent = 10\n",
            "profile tiny: 50 / 10 = 5.00 per position < trading.capital.min_order_quote 6: no entry can ever be sent; "
            "lower trading.capital.profiles.tiny.max_concurrent or trading.capital.min_order_quote, or raise trading.capital.profiles.tiny.capital",
        ),
        (
            "[trading.capital.profiles.starter]\nposition_fraction = 0.05\n",
            "profile starter: 100 x position_fraction 0.05 = 5.00 per position < trading.capital.min_order_quote 6: no entry can ever be sent",
        ),
        (
            "[trading.risk]\nmax_cluster_exposure = 0.05\n",
            "profile starter: 100 x trading.risk.max_cluster_exposure 0.05 = 5.00 < trading.capital.min_order_quote 6: no entry can ever be sent",
        ),
        (
            "[trading.capital]\nprofile = 'one'\n[trading.capital.profiles.one]\ncapital = 6\nmax_concurrent = 1\n[trading.risk]\nmax_cluster_exposure = 1\n",
            "profile one: capital 6 less the entry's fee and slippage (0.15%) = 5.99 < trading.capital.min_order_quote 6: no entry can ever be sent",
        ),
        (
            "[trading.execution]\nmax_order_quote = 5\n",
            "trading.execution.max_order_quote 5 < trading.capital.min_order_quote 6: no entry can ever be sent; "
            "raise it or lower trading.capital.min_order_quote",
        ),
    ],
    ids=["per-position", "position-fraction", "cluster-cap", "fees", "max-order"],
)
def test_sizing_that_can_never_reach_the_minimum_order_is_refused_at_load(tmp_path: Path, text: str, says: str) -> None:
    """Capital 50 over 10 positions loaded and traded nothing: every entry was 5, under the
    minimum order of 6, and refused `min_order` in the journal, with nothing said at start."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "c.toml", text), env={})
    assert says in str(err.value)


def test_sizing_that_reaches_the_minimum_order_loads(tmp_path: Path) -> None:
    """Exactly the minimum is an entry; a small profile that is not in force is not checked
    (it is when chosen); every built-in profile can trade."""
    text = (
        "[trading.capital]\nmin_order_quote = 5\n[trading.capital.profiles.tiny]\ncapital = 50\nmax_concurrent = 10\n"
        "[trading.capital.profiles.small]\ncapital = 5\nmax_concurrent = 2\n"
    )
    cfg = write(tmp_path / "c.toml", text)
    assert load_config(cfg, env={"HOTCOIN_TRADING__CAPITAL__PROFILE": "tiny"}).config.trading.capital.active.capital == 50
    assert load_config(cfg, env={}).config.trading.capital.profile == "starter"
    with pytest.raises(ConfigError, match=r"profile small: 5 / 2 = 2\.50 per position"):
        load_config(cfg, env={"HOTCOIN_TRADING__CAPITAL__PROFILE": "small"})
    for name in BUILT_IN:
        assert load_config(env={"HOTCOIN_TRADING__CAPITAL__PROFILE": name}).config.trading.capital.profile == name


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
@pytest.mark.parametrize("value", ["", "   ", " SECRETVALUE", "SECRETVALUE\n"], ids=["empty", "spaces", "padded", "newline"])
def test_every_secret_that_is_set_must_hold_something(tmp_path: Path, key: str, value: str) -> None:
    """`api_key = ""` and `api_secret = "   "` in the secrets file passed the load, the live
    gate and doctor, as keys: the first signed request was the first to fail. Every secret is
    refused blank or padded, named by its key, its value never shown."""
    *table, name = key.split(".")
    path = write(tmp_path / "secrets.toml", f"[{'.'.join(table)}]\n{name} = {json.dumps(value)}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_config(env={"HOTCOIN_PATHS__SECRETS_FILE": str(path)})
    message = str(err.value)
    assert f"  {key} (from file:{path}): Value error, " in message
    assert "SECRETVALUE" not in message and "got ***" in message


def test_blank_exchange_keys_do_not_reach_the_live_gate(tmp_path: Path) -> None:
    from engine.runtime.session import RunOptions, check_live

    path = write(tmp_path / "secrets.toml", '[exchange]\napi_key = ""\napi_secret = "   "\n')
    path.chmod(0o600)
    env = {"HOTCOIN_PATHS__SECRETS_FILE": str(path), "HOTCOIN_MODE": "live", "HOTCOIN_EXCHANGE__NAME": "binance"}
    with pytest.raises(ConfigError, match=r"exchange\.api_key .*api_key is empty: put the value in the secrets file"):
        check_live(load_config(env=env).config, RunOptions(demo=False, live=True, confirm_live=True))
    keys = '[exchange]\napi_key = "k"\napi_secret = "s"\n'
    assert load_config(env={**env, "HOTCOIN_PATHS__SECRETS_FILE": str(write(path, keys))}).config.exchange.api_key is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[trading.exits]\nstop_loss = 0.04\n[trading.risk]\nmax_spread = 0.08\n", "trading.risk.max_spread 0.08 >= trading.exits.stop_loss 0.04"),
        ("[trading.risk]\nmax_spread = 0.04\n", "trading.risk.max_spread 0.04 >= trading.exits.stop_loss 0.04"),
    ],
    ids=["above", "equal"],
)
def test_a_max_spread_at_or_above_the_stop_loss_is_refused(tmp_path: Path, text: str, says: str) -> None:
    """A 6 % spread lost 6 % against a 4 % stop on the next tick with no price move; the
    setting's own description says so, and the config loaded all the same."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "c.toml", text), env={})
    assert f"{says}: an entry at that spread starts at or past its stop" in str(err.value)
    assert "lower trading.risk.max_spread well under the stop (unset, it is a quarter of it: 0.01)" in str(err.value)


def test_a_max_spread_under_the_stop_loss_and_the_default_load(tmp_path: Path) -> None:
    risk = load_config(write(tmp_path / "c.toml", "[trading.risk]\nmax_spread = 0.02\n"), env={}).config.trading.risk
    assert risk.max_spread == 0.02
    assert load_config(env={}).config.trading.risk.max_spread is None


@pytest.mark.parametrize("given", ["usdt", " USDT", "Usdt\n"])
def test_the_quote_asset_is_read_in_any_case(tmp_path: Path, given: str) -> None:
    """`quote_asset = "usdt"` loaded as written, and the engine, matching markets on it exactly,
    watched no market at all with nothing naming the setting."""
    cfg = write(tmp_path / "c.toml", f"[exchange]\nquote_asset = {json.dumps(given)}\n[sim]\nquote_asset = {json.dumps(given)}\n")
    config = load_config(cfg, env={}).config
    assert (config.exchange.quote_asset, config.sim.quote_asset) == ("USDT", "USDT")
    assert load_config(env={"HOTCOIN_EXCHANGE__QUOTE_ASSET": "fdusd"}).config.exchange.quote_asset == "FDUSD"


def test_a_quote_asset_that_is_no_asset_code_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"exchange\.quote_asset \(from env:HOTCOIN_EXCHANGE__QUOTE_ASSET\): Value error, 'US DT' is not an asset code"):
        load_config(env={"HOTCOIN_EXCHANGE__QUOTE_ASSET": "US DT"})
