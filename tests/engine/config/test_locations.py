"""Whether hotcoin can keep its files in a folder: asked by `hotcoin doctor` without creating
anything, and by a start, which makes the folder or refuses in one line.

The box may run the tests as root, who can write anywhere: an unwritable folder is simulated
by answering `os.access` for it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config.locations import folder_problem, make_folder
from engine.errors import ConfigError


def deny_writes_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`os.access` says `folder` cannot be written in (what a read-only mount, an immutable
    folder or another user's folder answer); every other path is asked for real."""
    real = os.access

    def access(path: os.PathLike[str] | str, mode: int, **kwargs: object) -> bool:
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode)

    monkeypatch.setattr(os, "access", access)


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.sqlite"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        (lambda t: t / "data", None),
        (lambda t: t / "new" / "deeper" / "data", None),
        (lambda t: t, None),
        (lambda t: _file(t), "is a file, not a folder"),
        (lambda t: _file(t) / "data", "cannot be created: {tmp}/garbage.sqlite is a file, not a folder"),
        (lambda t: _file(t) / "a" / "b", "cannot be created: {tmp}/garbage.sqlite is a file, not a folder"),
    ],
    ids=["missing", "missing-parents", "present", "a-file", "under-a-file", "deep-under-a-file"],
)
def test_folder_problem_names_the_part_of_the_path_in_the_way(
    tmp_path: Path, where: Callable[[Path], Path], problem: str | None
) -> None:
    path = where(tmp_path)
    assert folder_problem(path) == (None if problem is None else problem.format(tmp=tmp_path))
    assert not (tmp_path / "data").exists() and not (tmp_path / "new").exists()  # doctor creates nothing


def test_folder_problem_sees_folders_it_cannot_write_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes_in(monkeypatch, ro)
    assert folder_problem(ro) == "is not writable"
    assert folder_problem(ro / "data") == f"cannot be created: {ro} is not writable"
    assert folder_problem(tmp_path / "data") is None


def test_make_folder_makes_a_private_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "data"
    make_folder(path, "paths.data_dir", "fix it")
    assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o700
    make_folder(path, "paths.data_dir", "fix it")  # there already: fine


def test_make_folder_refuses_in_one_line_with_the_setting_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = _file(tmp_path) / "data"
    with pytest.raises(ConfigError) as refused:
        make_folder(blocked, "paths.data_dir", "point paths.data_dir at a folder you can write in")
    assert str(refused.value) == (
        f"paths.data_dir {blocked} cannot be created: {tmp_path}/garbage.sqlite is a file, not a folder; "
        "point paths.data_dir at a folder you can write in"
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes_in(monkeypatch, ro)
    with pytest.raises(ConfigError, match=rf"^the journal's folder {ro} is not writable; fix$"):
        make_folder(ro, "the journal's folder", "fix")


def test_make_folder_names_what_it_could_not_foresee(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure `folder_problem` does not predict (a full disk) still becomes the one-line refusal."""

    def full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(ConfigError, match=r"^paths.data_dir .*/data cannot be created \(No space left on device\); fix$"):
        make_folder(tmp_path / "data", "paths.data_dir", "fix")
