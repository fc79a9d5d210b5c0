"""Job specs reject what cannot run; packs are byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from gpu_jobs.pack import REMOTE_MODULES, code_sha256, pack_job
from gpu_jobs.spec import DatasetInfo, JobSpec, SpecError
from tests.gpu_jobs.kit import make_dataset, make_spec


@pytest.fixture
def dataset(tmp_path: Path) -> DatasetInfo:
    return make_dataset(tmp_path / "ds")


def test_same_job_packs_to_the_same_bytes_and_id(tmp_path: Path, dataset: DatasetInfo) -> None:
    spec = make_spec("lstm_hot", dataset)
    a = pack_job(spec, tmp_path / "ds", tmp_path / "a")
    b = pack_job(spec, tmp_path / "ds", tmp_path / "b")
    assert a.job_id == b.job_id and a.path.read_bytes() == b.path.read_bytes()
    assert a.job_id == f"lstm_hot-{hashlib.sha256(a.path.read_bytes()).hexdigest()[:16]}"
    with tarfile.open(a.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {"job.json", "data/features.npy", "data/close.npy", "data/meta.json", "data/timestamps.npy"} <= set(names)
    assert {f"code/gpu_jobs/{m}" for m in REMOTE_MODULES} <= set(names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members if m.isfile()} == {(0, 0, 0, "", 0o600)}
    # every folder is an entry of its own, private too (not left to the box's umask)
    folders = {m.name: (m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members if m.isdir()}
    assert folders == {name: (0, 0, 0, "", 0o700) for name in ("code", "code/gpu_jobs", "code/gpu_jobs/models", "data")}
    assert a.spec.code_sha256 == code_sha256()


def test_a_different_seed_is_a_different_job(tmp_path: Path, dataset: DatasetInfo) -> None:
    a = pack_job(make_spec("lstm_hot", dataset, seed=1), tmp_path / "ds", tmp_path / "p")
    b = pack_job(make_spec("lstm_hot", dataset, seed=2), tmp_path / "ds", tmp_path / "p")
    assert a.job_id != b.job_id


def test_spec_round_trips_through_json(dataset: DatasetInfo) -> None:
    spec = make_spec("tft_heat", dataset, epochs=3)
    assert JobSpec.from_json(json.loads(spec.dumps())) == spec
    assert spec.params["epochs"] == 3 and spec.params["lr"] == 1e-3


@pytest.mark.parametrize(
    ("task", "hyper", "message"),
    [
        pytest.param("xgb", {}, "unknown task 'xgb'; known tasks: lstm_hot, tft_heat, ppo_sizing", id="task"),
        pytest.param("lstm_hot", {"epochz": 3}, r"\['epochz'\] do not apply to lstm_hot", id="typo"),
        pytest.param("lstm_hot", {"epochs": 0}, "epochs must be at least 1", id="epochs"),
        pytest.param("ppo_sizing", {"test_fraction": 1.5}, "test_fraction must be between 0 and 1", id="fraction"),
    ],
)
def test_spec_rejects_what_cannot_run(dataset: DatasetInfo, task: str, hyper: dict[str, float], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        JobSpec(task=task, interval="1m", dataset=dataset, hyper=hyper)


def test_spec_interval_must_match_the_dataset(dataset: DatasetInfo) -> None:
    with pytest.raises(SpecError, match="dataset is 1m candles but the job says 5m"):
        JobSpec(task="lstm_hot", interval="5m", dataset=dataset)
