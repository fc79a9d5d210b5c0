"""One widget per module; each takes plain snapshot data and never calls the engine."""
