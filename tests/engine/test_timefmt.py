import pytest

from engine.timefmt import span, utc_second


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(45_000, "45s"), (720_000, "12m"), (11_100_000, "3h05"), (187_200_000, "2d04"), (-5, "0s"), (1_800_000.0, "30m")],
)
def test_span_is_compact(ms: float, shown: str) -> None:
    assert span(ms) == shown


def test_utc_second() -> None:
    assert utc_second(1_617_403_020_000) == "2021-04-02 22:37:00 UTC"
