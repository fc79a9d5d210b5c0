"""hotcoin's faces: the `hotcoin` command line (Typer) and the Textual console.

Heavy modules (textual, ccxt, pandas, the engine runtime) are imported inside the commands
that need them, so `hotcoin --help` and `hotcoin replay` start fast.
"""
