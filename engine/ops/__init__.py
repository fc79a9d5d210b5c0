"""Operations: health and Prometheus metrics (and, later, notifications and reports)."""
