"""The SQLite journal: every decision, with its trace, so any trade can be explained later."""
