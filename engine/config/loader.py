"""Build the effective config from its layers: defaults < TOML file < HOTCOIN_* env < CLI flags.

Each leaf value remembers where it came from, so an error can name the key, the file (or
variable) that set it, and the fix; `hotcoin config show --sources` prints the same map.
Secrets come only from the secrets file (mode 0600) or the environment.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from engine.config import locations
from engine.config.model import SECRET_KEYS, HotcoinConfig
from engine.errors import ConfigError

log = logging.getLogger("hotcoin.config")

ENV_PREFIX = "HOTCOIN_"
# Variables with their own meaning, not config keys (None: not the config's at all; read where
# they act: the decoded-candle cache's switch, `engine.sim.candle_cache`, and the compiled
# baselines', `engine.discovery.rolling_robust`).
ENV_SPECIAL = {
    "HOTCOIN_CONFIG": None,
    "HOTCOIN_JOURNAL": "journal.path",
    "HOTCOIN_CANDLE_CACHE": None,
    "HOTCOIN_NO_NATIVE": None,
}
# Every table above a secret (`notify`, `notify.telegram`, ...): a plain value put there is most
# likely the secret itself (`telegram = "123:TOKEN"`), so it is refused and never echoed.
SECRET_TABLES: frozenset[str] = frozenset(
    key.rsplit(".", depth)[0] for key in SECRET_KEYS for depth in range(1, key.count(".") + 1)
)

# Settings that no longer exist, with why: a config that still sets one loads with a warning
# instead of being refused as an unknown key, so an old config file keeps working.
_ALERTS_GONE = "anomaly alerts were computed but never shown or acted on; heat scores the same z-scores"
RETIRED: Mapping[str, str] = {
    "discovery.anomaly.price_z_alert": _ALERTS_GONE,
    "discovery.anomaly.volume_z_alert": _ALERTS_GONE,
    "discovery.anomaly.alert_cooldown_ms": _ALERTS_GONE,
}


@dataclass(frozen=True)
class LoadedConfig:
    config: HotcoinConfig
    sources: Mapping[str, str] = field(default_factory=dict)  # dotted key -> "file:/x.toml" | "env:VAR" | "cli"
    config_file: Path | None = None

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def load_config(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """The effective config. Raises `ConfigError` with key, origin and fix on any problem."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    path = _choose_config_file(config_file, env)
    if path is not None:
        data = read_toml(path, what="config file")
        for key in _leaf_keys(data):
            if key in SECRET_KEYS:
                raise ConfigError(
                    f"{key} is a secret and may not be set in the config file {path}; "
                    "move it to the secrets file (chmod 600) or set it in the environment"
                )
            if key in SECRET_TABLES:
                raise ConfigError(f"{key} in the config file {path} {_not_a_table(key)}")
        _merge(merged, data, sources, f"file:{path}")

    _merge(merged, _env_layer(env, merged), sources, None)
    if cli:
        for key in cli:
            if key in SECRET_KEYS:
                raise ConfigError(f"{key} is a secret and may not be passed on the command line")
        _merge(merged, _unflatten(cli), sources, "cli")

    secrets_path = Path(dotted_get(merged, "paths.secrets_file") or locations.default_secrets_file()).expanduser()
    if secrets_path.exists():
        secrets = _read_secrets(secrets_path)
        # Environment wins over the secrets file, like every other layer.
        secrets = {k: v for k, v in _flatten(secrets).items() if not sources.get(k, "").startswith("env:")}
        _merge(merged, _unflatten(secrets), sources, f"file:{secrets_path}")

    _drop_retired(merged, sources)
    try:
        config = HotcoinConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
    return LoadedConfig(config=config, sources=sources, config_file=path)


def _drop_retired(merged: dict[str, Any], sources: dict[str, str]) -> None:
    """Take the retired settings out before validation, with one warning for all of them."""
    found: dict[str, list[str]] = {}  # why -> the keys set, with who set them
    for key, why in RETIRED.items():
        *parents, leaf = key.split(".")
        table = dotted_get(merged, ".".join(parents))
        if isinstance(table, dict) and leaf in table:
            del table[leaf]
            found.setdefault(why, []).append(f"{key} (from {sources.pop(key, 'defaults')})")
    if found:
        log.warning(
            "config: ignored, as no longer used: %s. Delete them from the config",
            "; ".join(f"{', '.join(keys)} - {why}" for why, keys in found.items()),
        )


def _choose_config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit is None and env.get("HOTCOIN_CONFIG"):
        explicit = Path(env["HOTCOIN_CONFIG"])
    if explicit is not None:
        explicit = explicit.expanduser()
        if explicit.is_dir():
            raise ConfigError(f"config file {explicit} is a directory; --config/HOTCOIN_CONFIG takes a TOML file")
        if explicit.exists() and not explicit.is_file():  # a device (/dev/null), a pipe, a socket: not "missing"
            raise ConfigError(
                f"config file {explicit} is not a regular file; --config/HOTCOIN_CONFIG takes a TOML file "
                "(drop it to run on defaults)"
            )
        if not explicit.is_file():
            raise ConfigError(
                f"config file {explicit} does not exist; create it, or drop --config/HOTCOIN_CONFIG "
                "to run on defaults"
            )
        return explicit
    default = locations.default_config_file()
    return default if default.is_file() else None


def read_toml(path: Path, *, what: str) -> dict[str, Any]:
    """The file's tables; UTF-8 with or without the byte-order mark some Windows editors add.
    Every reader of a config file goes through here (`hotcoin optimize` re-reads it to write
    best.toml): a second reader with its own decoding refused, after the search, a file the
    loader had taken."""
    import tomllib  # here: a run without a config file (a backtest's) never parses TOML (~1.5 ms of its start)

    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}; fix the syntax at that line") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def _read_secrets(path: Path) -> dict[str, Any]:
    if path.is_dir():  # its mode (0755) would ask for a chmod 600 that cannot help
        raise ConfigError(
            f"secrets file {path} is a directory, not a file; remove it (the secrets file is TOML, chmod 600), "
            "or point paths.secrets_file at the file"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"secrets file {path} is readable by group or others (mode {mode:04o}); "
            f"refusing to use it. Fix: chmod 600 {path}"
        )
    data = read_toml(path, what="secrets file")
    for key in _leaf_keys(data):
        if key in SECRET_TABLES:
            raise ConfigError(f"{key} in the secrets file {path} {_not_a_table(key)}")
        if key not in SECRET_KEYS:
            raise ConfigError(f"secrets file {path} sets {key}, which is not a secret; {_not_secret_fix(key)}")
    return data


def _not_a_table(key: str) -> str:
    """The error for a plain value where a table of secrets belongs; the value is not shown,
    since it is most likely the secret written one level too high."""
    inner = sorted(k.removeprefix(f"{key}.") for k in SECRET_KEYS if k.startswith(f"{key}."))
    return (
        f"must be a [{key}] table, not a value; the value is not shown, as it may be a secret. "
        f"Fix: write [{key}] with its keys (see `hotcoin config show --doc`); its secrets ({', '.join(inner)}) "
        f"go in the secrets file (chmod 600) or the environment (HOTCOIN_{_env_name(f'{key}.{inner[0]}')})"
    )


def _not_secret_fix(key: str) -> str:
    """What to do with a non-secret key in the secrets file: a misspelt secret gets its right
    name (moving it to the config file would only earn a refusal there); others move."""
    allowed = ", ".join(sorted(SECRET_KEYS))
    guess = difflib.get_close_matches(key, SECRET_KEYS, n=1)
    if guess:
        return f"did you mean {guess[0]!r}? The secrets file takes only: {allowed}"
    return f"put it in the config file. The secrets file takes only: {allowed}"


def _env_name(dotted: str) -> str:
    return "__".join(part.upper() for part in dotted.split("."))


def _env_layer(env: Mapping[str, str], below: Mapping[str, Any]) -> dict[str, Any]:
    """HOTCOIN_SECTION__KEY=value -> {"section": {"key": value}}; each value keeps its variable.

    A JSON object merges key by key, into the file's table and with other variables, rather than
    replacing them (the more specific variable wins). An empty variable counts as unset, as
    `HOTCOIN_X=` in a unit file or a shell usually means "not this one". Each part of the name
    takes the spelling of the key the lower layers (`below`, the config file) already have there
    or a broader variable's JSON object (`_env_key`), since a variable cannot say `Main` from `main`."""
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items(), key=lambda item: item[0].count("__")):
        if not name.startswith(ENV_PREFIX) or raw == "":
            continue
        if name in ENV_SPECIAL:
            dotted = ENV_SPECIAL[name]
            if dotted is None:
                continue
        else:
            dotted = _env_key(name, (below, out))
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"{name} looks like JSON but does not parse; quote it as JSON or drop the brackets") from None
        misplaced = _values_at_secret_tables(value, dotted)
        if misplaced:
            raise ConfigError(f"{misplaced[0]} from {name} {_not_a_table(misplaced[0])}")
        dotted_set(out, dotted, _tag(name, value))
    return out


def _env_key(name: str, below: tuple[Mapping[str, Any], ...]) -> str:
    """The dotted key variable `name` sets. Environment names are upper case by custom, so a
    part matches a key already there at its level (in `below`: the config file's tables, and a
    JSON object a broader variable gave) whatever its case, and takes that key's spelling:
    lowered, `..._PROFILES__MAIN__CAPITAL` made a new profile `main` beside the file's `Main`,
    which kept its capital, silently. A part that matches no key there is lower case, as every
    setting's name is; one that matches several (`Main` and `main`) is refused, naming them."""
    parts: list[str] = []
    nodes: list[Any] = list(below)
    for part in name[len(ENV_PREFIX) :].split("__"):
        same = sorted({key for node in nodes if isinstance(node, Mapping) for key in node if key.lower() == part.lower()})
        if len(same) > 1:
            spellings = " and ".join(repr(".".join([*parts, k])) for k in same)
            table = f"{ENV_PREFIX}{_env_name('.'.join(parts))}" if parts else None
            json_fix = f', or set the one meant in a JSON object, {table}=\'{{"{same[0]}": ...}}\' (its keys keep their case)'
            raise ConfigError(
                f"{name} matches both {spellings}, which differ only in case, and a variable's name "
                f"cannot tell them apart. Fix: rename one of them in the config file{json_fix if table else ''}"
            )
        key = same[0] if same else part.lower()
        parts.append(key)
        nodes = [node.get(key) for node in nodes if isinstance(node, Mapping)]
    return ".".join(parts)


def _tag(var: str, value: Any) -> Any:
    """`value` with each leaf wrapped to remember `var`, so every leaf records its own source."""
    if isinstance(value, dict):
        return {key: _tag(var, sub) for key, sub in value.items()}
    return _EnvValue(var, value)


def deep_update(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """Merge `src` into `dst` table by table (a value in `src` replaces the one at its key)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            deep_update(dst[key], value)
        else:
            dst[key] = value


def _values_at_secret_tables(value: Any, dotted: str) -> list[str]:
    """Keys at or under `dotted` that are tables holding secrets but were given a plain value."""
    if dotted not in SECRET_TABLES:
        return []
    if not isinstance(value, Mapping):
        return [dotted]
    return [bad for key, sub in value.items() for bad in _values_at_secret_tables(sub, f"{dotted}.{key}")]


@dataclass(frozen=True)
class _EnvValue:
    """A value that remembers which environment variable set it."""

    var: str
    value: Any


def _merge(dst: dict[str, Any], src: Mapping[str, Any], sources: dict[str, str], origin: str | None, prefix: str = "") -> None:
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) != isinstance(dst.get(key), dict):
            _forget(sources, dotted)  # a table replaced by a value, or the other way round
        if isinstance(value, Mapping):
            node = dst.get(key)
            if not isinstance(node, dict):
                node = dst[key] = {}
            _merge(node, value, sources, origin, f"{dotted}.")
        elif isinstance(value, _EnvValue):
            dst[key] = value.value
            sources[dotted] = f"env:{value.var}"
        else:
            dst[key] = value
            sources[dotted] = origin or "default"


def _forget(sources: dict[str, str], dotted: str) -> None:
    """Drop the origins recorded at and under `dotted`, whose value a later layer replaced."""
    for key in [k for k in sources if k == dotted or k.startswith(f"{dotted}.")]:
        del sources[key]


def _explain(exc: ValidationError, sources: Mapping[str, str]) -> str:
    # dict.fromkeys: one line for one problem (each value missing from a short list is an error of its own).
    return "\n".join(["invalid configuration:", *dict.fromkeys(_explain_one(err, sources) for err in exc.errors())])


# Pydantic's error types for a value given where a table (a section, a profile) belongs.
_NOT_A_TABLE = {"model_type", "model_attributes_type", "dict_type"}


def _explain_one(err: ErrorDetails, sources: Mapping[str, str]) -> str:
    """One problem on one line: key, who set it, what is wrong and the fix."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    if err["type"] == "value_error" and isinstance(err.get("input"), Mapping):
        # A rule across keys (a table's model validator): its message names them and the fix,
        # where the input (the whole table) and the table's default would only bury it.
        rule = err["msg"].removeprefix("Value error, ")
        return f"  {key} (from {_origin(key, sources)}): {rule}" if key else f"  {rule}"
    head = f"  {key} (from {_origin(key, sources)}):"
    if err["type"] == "extra_forbidden":
        known = _known_fields(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        fix = f"did you mean {'.'.join([*loc[:-1], guess[0]])!r}?" if guess else f"known keys here: {', '.join(known)}"
        return f"{head} unknown key; {fix}"
    field = loc[:-1] if err["type"] == "missing" and loc and loc[-1].isdigit() else loc
    length = _fixed_length(field) if err["type"] in _WRONG_LENGTH else None
    if length is not None:
        return _explain_length(field, length, err.get("input"), sources)
    if err["type"] == "missing":
        return _explain_missing(key, loc, _origin(key, sources))
    shown = "***" if _holds_secret(key) else repr(err.get("input"))
    if err["type"] in _NOT_A_TABLE:
        table = ".".join(p for p in loc if not p.isdigit())
        table = f"[[{table}]]" if table != key else f"[{table}]"
        return f"{head} must be a {table} table, not a value; got {shown}. Fix: write {table} with its keys (see `hotcoin config show --doc`)"
    return f"{head} {err['msg']}; got {shown}. Fix: {_fix_hint(loc)}"


# Pydantic's error types for a list of the wrong length given to a fixed-length tuple: each
# value short is a `missing` at its index, too many is `too_long`, a lone value `tuple_type`.
_WRONG_LENGTH = {"missing", "too_long", "too_short", "tuple_type"}


def _fixed_length(loc: list[str]) -> int | None:
    """How many values the setting at `loc` takes, where it is a tuple of a fixed length
    (`trading.risk.level_thresholds`, four); None for anything else."""
    model = _model_at(loc[:-1]) if loc else None
    info = model.model_fields.get(loc[-1]) if model is not None else None
    args = typing.get_args(info.annotation) if info is not None else ()
    if info is None or typing.get_origin(info.annotation) is not tuple or not args or Ellipsis in args:
        return None
    return len(args)


def _explain_length(loc: list[str], length: int, given: Any, sources: Mapping[str, str]) -> str:
    """A fixed-length list with too few or too many values, or a lone value. Reported at the
    index of each value short (`level_thresholds.3 ... Fix: add 3 = ...`, or `also set
    ..._LEVEL_THRESHOLDS__3`), it sent the owner to a key or a variable that cannot exist."""
    key = ".".join(loc)
    model = _model_at(loc[:-1])
    info = model.model_fields[loc[-1]] if model is not None else None
    example = info.get_default(call_default_factory=True) if info is not None else None
    shown = "[" + ", ".join(map(str, example)) + "]" if isinstance(example, tuple) else "[...]"
    got = f"got {len(given)}: {list(given)!r}" if isinstance(given, list | tuple) else f"got {given!r}, not a list"
    meaning = f" ({info.description})" if info is not None and info.description else ""
    return (
        f"  {key} (from {_origin(key, sources)}): needs a list of {length} values, {got}. Fix: e.g. {loc[-1]} = {shown} "
        f"in the file; in the environment a JSON list, {ENV_PREFIX}{_env_name(key)}='{shown}'{meaning}"
    )


def _explain_missing(key: str, loc: list[str], origin: str) -> str:
    """A required key left out of a table: named with the layer that wrote the table. Set from
    the environment, the fix is the variable for the missing key, not the one that made the
    table (`..._PROFILES__MINE__CAPITAL` alone was blamed for a missing max_concurrent)."""
    if origin.startswith("env:"):
        return (
            f"  {key} (table set by {origin}): required but not set. Fix: also set "
            f"{ENV_PREFIX}{_env_name(key)} ({_fix_hint(loc)})"
        )
    return f"  {key} (from {origin}): required but not set. Fix: add {loc[-1]} = ... ({_fix_hint(loc)})"


def _holds_secret(key: str) -> bool:
    """A secret, something inside one, or a table above one: its input may be a secret."""
    return key in SECRET_KEYS or key in SECRET_TABLES or any(key.startswith(f"{secret}.") for secret in SECRET_KEYS)


def _fix_hint(loc: list[str]) -> str:
    model = _model_at(loc[:-1])
    info = model.model_fields.get(loc[-1]) if model is not None else None
    if info is None:
        return "see `hotcoin config show --doc`"
    meaning = info.description or "see `hotcoin config show --doc`"
    if info.is_required():
        return f"{meaning} (required, no default)"
    return f"{meaning} (default: {info.get_default(call_default_factory=True)!r})"


def _known_fields(loc: list[str]) -> list[str]:
    model = _model_at(loc)
    return sorted(model.model_fields) if model is not None else []


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The config model a dotted location points into, following sections, the values of
    mapping fields such as `gpu.<profile>` (where the profile name is any key) and the items of
    arrays of tables such as `trading.exits.take_profit.<index>`."""
    model: type[BaseModel] = HotcoinConfig
    parts = iter(loc)
    for part in parts:
        info = model.model_fields.get(part)
        sub = getattr(info, "annotation", None) if info else None
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
            continue
        args = typing.get_args(sub)
        if typing.get_origin(sub) is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            if next(parts, None) is None:  # pointing at the mapping itself: no fixed keys
                return None
            model = args[1]
            continue
        if typing.get_origin(sub) in (tuple, list) and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            if next(parts, None) is None:  # pointing at the array of tables itself
                return None
            model = args[0]
            continue
        return None
    return model


def _origin(key: str, sources: Mapping[str, str]) -> str:
    """Who set `key`: its own record, else that of a key under it (only leaves are recorded, so
    an unknown table such as `[jounral]` is known by its keys), else of the nearest table above."""
    while key:
        if key in sources:
            return sources[key]
        under = next((origin for k, origin in sources.items() if k.startswith(f"{key}.")), None)
        if under is not None:
            return under
        key = key.rpartition(".")[0]
    return "defaults"


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    return list(_flatten(data, prefix))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        dotted_set(out, key, value)
    return out


def dotted_set(out: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` = `value` in nested `out`, making the tables on the way."""
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: {part} is a value, not a section")
        node = nxt
    deep_update(node, {leaf: value})


def dotted_get(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at `dotted` in nested `data`, or None where there is none."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
