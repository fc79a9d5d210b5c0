"""Social sources: posts from X, Binance Square or anything that writes JSONL or calls a webhook,
scored for sentiment and turned into per-symbol mention velocity."""
