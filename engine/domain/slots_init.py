"""A cheaper `__init__` for the frozen, slotted dataclasses built by the ten thousand: the
generated one stores each field through `object.__setattr__` by name, this one straight
through the slot's descriptor."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def direct_init(cls: type[T]) -> type[T]:
    """`cls` (a frozen, slotted dataclass) with an `__init__` that stores each field through its
    slot's descriptor: same parameters, defaults and default factories as the generated one,
    about half its cost (that one goes through `object.__setattr__` by name, field by field).
    Discovery and signals build tens of thousands of these a replayed month (candidates on each
    side of the backtest's pipe; `test_discovery_domain.py` holds both constructors to equal
    objects)."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not (params.frozen and params.init) or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"direct_init is for frozen, slotted dataclasses without __post_init__; not {cls.__name__}")
    names, body = [], []
    scope: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(f"direct_init takes positional init fields only; {cls.__name__}.{f.name} is not")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            names.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            names.append(f"{f.name}=_MISSING")
            value = f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"
        else:
            names.append(f.name)
        body.append(f"    _set_{f.name}(self, {value})\n")
    exec(f"def __init__(self, {', '.join(names)}):\n{''.join(body)}", scope)  # as dataclasses builds its own
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
