"""`python -m bench` lists the benchmarks; `python -m bench NAME [ARGS]` runs one.

Each benchmark is also runnable as `python -m bench.bench_NAME`; figures go to bench/RESULTS.md
with the command and the date.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if len(sys.argv) < 2:
        for name in names:
            doc = ast.get_docstring(ast.parse((HERE / f"bench_{name}.py").read_text())) or ""
            print(f"{name:20} {doc.splitlines()[0] if doc else ''}")
        print("\nrun one: python -m bench NAME [ARGS]")
        return 0
    name = sys.argv[1].removeprefix("bench_")
    if name not in names:
        print(f"unknown benchmark {name!r}; one of: {', '.join(names)}", file=sys.stderr)
        return 2
    sys.argv = [f"bench.bench_{name}", *sys.argv[2:]]
    runpy.run_module(f"bench.bench_{name}", run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
