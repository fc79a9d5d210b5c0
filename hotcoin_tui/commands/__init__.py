"""One module per command group; each holds options and delegates to one function."""
