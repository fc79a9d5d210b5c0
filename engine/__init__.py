"""hotcoin engine: the synchronous decision core and the async runtime around it.

Nothing in this package imports textual or `hotcoin_tui` (enforced by import-linter
and by `tests/test_import_boundary.py`): the engine must run headless on a trading box.
"""
