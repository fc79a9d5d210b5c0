"""Execution: pre-checks, client order ids, the order lifecycle, brokers (paper and exchange)."""
