"""Every check reads with its comparison: `precheck:balance 50.06 ≤ 100 ✔`, `max_concurrent 1 < 1 ✘`.

Audit: replay showed each check as "value X threshold Y" while some pass under their threshold
(`precheck:balance`) and some over it (`cash`), and a refusal read "max_concurrent failed:
value 1, threshold 1". The direction comes from `engine.journal.checks`, a table by check
name; these tests walk the engine's source for every check it can journal, so a new check
cannot render without its direction, nor with one its code does not apply.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.journal.checks import OPS, PREFIX_OPS, op_of
from engine.journal.events import check
from engine.journal.trace import Check, summarise
from engine.signals.rules import entry_rules, exit_rules
from tests.kit.events import RecordingSink, risk_rejected_trace

ENGINE = Path(__file__).resolve().parents[3] / "engine"
PRECHECK = ENGINE / "execution" / "precheck.py"
_AST_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.In: "in", ast.NotIn: "not in"}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(ENGINE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _check_aliases(tree: ast.Module) -> set[str]:
    """The names `engine.journal.events.check` goes by in a module."""
    return {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "engine.journal.events"
        for a in node.names
        if a.name == "check"
    }


def _names_of(node: ast.expr) -> list[str] | None:
    """The names a check's name expression can journal: a literal; an f-string's literal head
    plus a stand-in for its variable part (`cluster_count:{cluster}` -> `cluster_count:X`);
    both of `a if c else b`; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return [f"{node.values[0].value}X"]
    if isinstance(node, ast.IfExp):
        body, orelse = _names_of(node.body), _names_of(node.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def _bare(node: ast.expr) -> ast.expr:
    """`str(x)`, `float(x)`, `round(x, n)` -> x: the journal's formatting of what was compared."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"str", "float", "round"} and node.args:
        node = node.args[0]
    return node


def _derived_op(passed: ast.expr, value: ast.expr, threshold: ast.expr) -> str | None:
    """The op a check's own code applies, where its `passed` compares its value with its
    threshold (the last clause of `limit <= 0 or qty >= limit`); None where it does not."""
    if isinstance(passed, ast.BoolOp) and isinstance(passed.op, ast.Or):
        passed = passed.values[-1]
    if not (isinstance(passed, ast.Compare) and len(passed.ops) == 1):
        return None
    left, right, op = ast.dump(_bare(passed.left)), ast.dump(_bare(passed.comparators[0])), _AST_OPS.get(type(passed.ops[0]))
    v, t = ast.dump(_bare(value)), ast.dump(_bare(threshold))
    if op is None:
        return None
    if (left, right) == (v, t):
        return op
    if (left, right) == (t, v) and op in _FLIPPED:
        return _FLIPPED[op]
    return None


def journaled_checks() -> list[tuple[str, str, str | None]]:
    """(where, journaled name, the op its code applies or None) for every check the engine can
    journal: every `check(...)` call (a precheck's as `precheck:NAME`, the prefix the trading
    core journals them under) and every signal rule (`Rule(...)` and the rule columns added
    by hand in engine/signals/rules.py: `names.append("...")`, `[*table.names, "..."]`)."""
    found: list[tuple[str, str, str | None]] = []
    for path, tree in _modules():
        where = str(path.relative_to(ENGINE.parent))
        aliases = _check_aliases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else None
            if func in aliases:
                names = _names_of(node.args[0])
                assert names is not None, f"{where}:{node.lineno}: a check named by a variable cannot be found here"
                derived = _derived_op(*node.args[1:4]) if len(node.args) >= 4 else None
                found += [(f"{where}:{node.lineno}", f"precheck:{n}" if path == PRECHECK else n, derived) for n in names]
            elif func == "Rule" and path.name == "rules.py" and len(node.args) == 4:
                names, op = _names_of(node.args[0]), node.args[2]
                if names is not None and isinstance(op, ast.Constant):
                    found += [(f"{where}:{node.lineno}", n, str(op.value)) for n in names]
            elif (
                isinstance(node.func, ast.Attribute) and node.func.attr == "append" and path.name == "rules.py"
                and node.args and isinstance(node.args[0], ast.Tuple) and len(node.args[0].elts) == 4
            ):  # fmt: skip
                name_node, value, passed, threshold = node.args[0].elts
                names = _names_of(name_node)
                if names is not None:
                    found += [(f"{where}:{node.lineno}", n, _derived_op(passed, value, threshold)) for n in names]
            elif (
                isinstance(node.func, ast.Attribute) and node.func.attr == "append" and path.name == "rules.py"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "names" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            ):  # fmt: skip  # a rule column's name added to a table's (`names.append("ml_score")`)
                found.append((f"{where}:{node.lineno}", node.args[0].value, None))
        if path.name == "rules.py":
            found += _table_extras(tree, where)
    return found


def _table_extras(tree: ast.Module, where: str) -> list[tuple[str, str, str | None]]:
    """The rule columns a rules table is extended with by hand: `[*table.names, "cooldown"]`."""
    out: list[tuple[str, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Starred):
            starred = node.elts[0].value
            if isinstance(starred, ast.Attribute) and starred.attr == "names":
                out += [
                    (f"{where}:{node.lineno}", e.value, None)
                    for e in node.elts[1:] if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]  # fmt: skip
    return out


def test_the_walk_finds_the_engines_checks() -> None:
    """The walk itself works: it finds the checks of every stage, and derives the op of many."""
    found = journaled_checks()
    names = {name for _, name, _ in found}
    assert {"min_quote_volume_24h", "heat", "reversal", "cooldown", "ml_score", "max_concurrent", "cash", "precheck:balance",
            "stop_loss", "take_profit_X", "cluster_count:X", "daily_loss"} <= names  # fmt: skip
    assert sum(derived is not None for _, _, derived in found) >= 30


def test_every_check_the_engine_journals_has_a_comparison() -> None:
    missing = sorted({f"{name} ({where})" for where, name, _ in journaled_checks() if op_of(name) is None})
    assert not missing, f"add these to engine.journal.checks.OPS (or PREFIX_OPS): {missing}"


def test_every_comparison_is_the_one_the_check_applies() -> None:
    """Where a check's own code compares its value with its threshold, the table says that op."""
    wrong = sorted(f"{name} ({where}): code {derived}, table {op_of(name)}" for where, name, derived in journaled_checks()
                   if derived is not None and op_of(name) != derived)  # fmt: skip
    assert not wrong


def test_the_table_names_no_check_the_engine_does_not_make() -> None:
    """A name left behind by a renamed check would hide that the new name has none."""
    made = {name for _, name, _ in journaled_checks()}
    stale = sorted(n for n in OPS if n not in made) + sorted(p for p in PREFIX_OPS if f"{p}X" not in made)
    assert not stale


@pytest.mark.parametrize("rules", [entry_rules, exit_rules], ids=["entry", "exit"])
def test_signal_rules_read_with_their_own_operator(rules: Callable[..., Any]) -> None:
    from engine.config.sections.trading import SignalSettings

    built = rules(SignalSettings(), 60.0) if rules is entry_rules else rules(SignalSettings())
    assert {r.name: op_of(r.name) for r in built} == {r.name: r.op for r in built}


@pytest.mark.parametrize(("raw", "condition"), [
    (check("precheck:balance", True, 50.0596, 100), "50.0596 ≤ 100"),
    (check("cash", True, 99.8502, 6), "99.8502 ≥ 6"),
    (check("max_concurrent", False, 1, 1), "1 < 1"),
    (check("max_concurrent", True, 0, 1), "0 < 1"),
    (check("cluster_exposure:meme", True, 20.0, 50.0), "20 < 50"),
    (check("take_profit_2", False, 1.21, 1.2), "1.21 < 1.2"),
    (check("not_blacklisted", False, "LUNA", "blacklist"), "LUNA not in blacklist"),
    (check("precheck:max_qty", True, "6.57", "0E-8"), "6.57, no maximum"),
    (check("precheck:max_qty", False, "6.57", "5"), "6.57 ≤ 5"),
    (check("max_hold", False, 14_400_000, 14_400_000), "4h00 < 4h00"),
    (check("cooldown", True, None, 1_800_000), "∞ (none yet) ≥ 30m"),
    (check("trailing_stop", True, 1.05, None), "1.05 > none (not armed)"),
    (check("quote_available", False, None, "bid/ask > 0"), "ask n/a > 0"),
], ids=lambda x: x if isinstance(x, str) else x["name"])  # fmt: skip
def test_a_check_reads_as_the_condition_it_needs(raw: dict[str, Any], condition: str) -> None:
    c = Check.parse("risk", raw)
    assert c.condition == condition and c.reading == condition


def test_a_check_of_a_name_the_engine_does_not_make_reads_as_before() -> None:
    """A journal of another version (or a test double's) names checks this one does not know:
    no direction is invented for them."""
    c = Check.parse("risk", check("max_concurrent_positions", False, 3, 3))
    assert (c.op, c.condition, c.reading) == (None, None, "value 3, threshold 3")


def test_a_refusal_at_an_equal_value_and_limit_says_which_way_it_compares() -> None:
    """The audit's `risk check max_concurrent failed: value 1, threshold 1`."""
    sink = RecordingSink()
    written = risk_rejected_trace(sink, open_positions=1, limit=1)
    verdict = summarise(written.trace_id, sink.trace(written.trace_id)).verdict
    assert verdict.reason == "risk check max_concurrent failed: 1 < 1 does not hold"
    assert verdict.blocked_by is not None and (verdict.blocked_by.op, verdict.blocked_by.condition) == ("<", "1 < 1")


def test_old_journals_need_no_new_key() -> None:
    """The check dict stays {name, passed, value, threshold}: the direction is read, not written."""
    assert set(check("cash", True, 1.0, 0.5)) == {"name", "passed", "value", "threshold"}
    assert operator.eq(Check.parse("risk", {"name": "cash", "passed": True, "value": 1.0, "threshold": 0.5}).op, ">=")
