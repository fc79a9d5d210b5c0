"""Walk-forward splits with a purge gap: train on the past, test on the next block, never peek.

A row at bar t carries a label that looks `horizon` bars ahead, so a training row closer than
`horizon` bars to the test block knows prices inside it. Every fold therefore ends its training
rows `horizon + embargo` bars before its test block starts: the purge removes the rows whose
labels overlap the test period, the embargo adds a margin against serial correlation (features
look back up to 60 bars, so neighbouring rows are near-copies). Folds are contiguous in time and
expanding: fold k trains on everything before its own gap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fold:
    """Bars [0, train_end) train; bars [test_start, test_end) test. Half-open bar indices."""

    index: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def gap(self) -> int:
        return self.test_start - self.train_end


def walk_forward(
    n_bars: int,
    folds: int,
    *,
    horizon: int,
    embargo: int,
    min_train_fraction: float = 0.4,
) -> list[Fold]:
    """`folds` equal test blocks over the bars after the first `min_train_fraction`; each fold's
    training ends `horizon + embargo` bars before its test block (its last training label ends
    `embargo` bars before the test block's first bar)."""
    if folds < 1:
        raise ValueError(f"need at least one fold, got {folds}")
    if horizon < 1 or embargo < 0:
        raise ValueError(f"horizon must be >= 1 and embargo >= 0, got {horizon} and {embargo}")
    if not 0.0 < min_train_fraction < 1.0:
        raise ValueError(f"min_train_fraction must be in (0, 1), got {min_train_fraction}")
    first_test = int(n_bars * min_train_fraction)
    block = (n_bars - first_test) // folds
    gap = horizon + embargo
    if block < 2 * horizon or first_test - gap < 1:
        raise ValueError(
            f"{n_bars} bars are too few for {folds} folds with a {gap}-bar purge gap; "
            "use more history, fewer folds or a shorter embargo"
        )
    out = []
    for k in range(folds):
        start = first_test + k * block
        end = n_bars if k == folds - 1 else start + block
        out.append(Fold(index=k, train_end=start - gap, test_start=start, test_end=end))
    return out


def check_no_leak(fold: Fold, horizon: int) -> None:
    """Raise when a training row's label window reaches into the test block."""
    last_label_bar = fold.train_end - 1 + horizon
    if last_label_bar >= fold.test_start:
        raise ValueError(
            f"fold {fold.index}: the last training row's label reads bar {last_label_bar}, inside the test "
            f"block starting at {fold.test_start}; the purge gap must be at least the label horizon ({horizon})"
        )
