"""Portfolio: positions and their exits, capital allocation, clusters and risk limits."""
