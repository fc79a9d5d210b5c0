"""The whole job cycle against a real sshd on 127.0.0.1: ship, run detached, follow, survive a
dropped connection, fetch, register; and the errors a user meets first."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.signals.scorer import Scorer
from gpu_jobs.client import JobEvent, RetryPolicy
from gpu_jobs.errors import RemoteEnvironmentError, TransportError
from gpu_jobs.inference import load_scorer
from gpu_jobs.pack import pack_job
from gpu_jobs.profiles import make_client
from gpu_jobs.register import register_fetched, registry_dir
from ml.governance.errors import ModelRefused
from ml.governance.registry import ModelRegistry
from tests.gpu_jobs.conftest import SshBox, free_port, make_config
from tests.gpu_jobs.kit import TINY_FEATURES, make_dataset, make_spec

FAST_RETRY = RetryPolicy(attempts=20, first_delay_s=0.05, max_delay_s=0.5)


async def test_lstm_job_over_ssh_ships_once_trains_fetches_and_registers(tmp_path: Path, sshd: SshBox) -> None:
    config = make_config(tmp_path, box=sshd.profile(tmp_path / "box"))
    events: list[JobEvent] = []
    client = make_client(config, "box", on_event=events.append, retry=FAST_RETRY)
    # Features computed with listing_min_bars 15 (as `hot_feature_set` computes features_hot):
    # the value travels in job.json to the contract, and scoring under another is refused.
    ds = make_dataset(tmp_path / "ds", features=dataclasses.replace(TINY_FEATURES, listing_min_bars=15))
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")

    fetched = await client.run(packed, tmp_path / "fetched")

    kinds = [e.kind for e in events]
    assert kinds[0] == "shipped" and "started" in kinds and kinds[-1] == "fetched"
    assert [e.data["epoch"] for e in events if e.kind == "progress"] == [1, 2]
    assert (tmp_path / "box" / "jobs" / packed.job_id / "out" / "model.pt").is_file()  # trained "there"
    assert sorted(p.name for p in fetched.iterdir()) == ["job.json", "metrics.json", "model.pt", "status.json", "train.log"]

    events.clear()
    assert await client.ship(packed) is False  # same job again: nothing is sent
    assert [e.kind for e in events] == ["ship_skipped"]
    assert (await client.start(packed.job_id))["started"] is False  # done stays done
    assert [j["job_id"] for j in await client.list_jobs()] == [packed.job_id]

    registry = ModelRegistry(registry_dir(config))
    version = register_fetched(fetched, registry, config.ml.gates, now_ms=123).version
    assert version.version == 1 and version.contract.feature_names == TINY_FEATURES.names
    assert version.contract.feature_schema_hash == TINY_FEATURES.schema_hash
    assert version.contract.job_id == packed.job_id and version.contract.listing_min_bars == 15
    assert version.contract.library_versions["torch"].startswith("2.")
    assert "close[t+5] / close[t] - 1 >= 0.01" in version.contract.label_definition
    assert {g.name for g in version.decision.gates} == {"oos_median_lift", "oos_worst_fold_lift", "fold_stability_cv", "oos_samples", "oos_folds"}
    assert version.decision.verdict in ("production", "research_only")

    scorer = load_scorer(registry, "lstm_hot", "1m", feature_schema_hash=TINY_FEATURES.schema_hash, listing_min_bars=15)
    assert (scorer.version, scorer.window, scorer.schema_hash) == ("lstm_hot_1m@v0001", 16, TINY_FEATURES.schema_hash)
    assert scorer.mode == ("production" if version.production else "shadow")
    slot: Scorer = scorer  # fits the engine's scorer slot (checked by mypy)
    assert slot.schema_hash == version.contract.feature_schema_hash
    p = scorer.score(np.random.default_rng(0).normal(size=(16, 3)))
    assert 0.0 <= p <= 1.0
    with pytest.raises(ValueError, match="shape"):
        scorer.score(np.zeros((3, 16)))
    with pytest.raises(ModelRefused, match="feature_schema_hash"):
        load_scorer(registry, "lstm_hot", "1m", feature_schema_hash="another-schema", listing_min_bars=15)
    with pytest.raises(ModelRefused, match=r"trained with trading\.signals\.listing_min_bars = 15, this engine runs with 10") as other:
        load_scorer(registry, "lstm_hot", "1m", feature_schema_hash=TINY_FEATURES.schema_hash, listing_min_bars=10)
    assert (other.value.which, other.value.expected, other.value.actual) == ("listing_min_bars", "15", "10")


@pytest.mark.parametrize("victim", ["sshd-child", "ssh-client"])
async def test_follow_reattaches_after_the_connection_is_killed(tmp_path: Path, sshd: SshBox, victim: str) -> None:
    config = make_config(tmp_path, box=sshd.profile(tmp_path / "box"))
    events: list[JobEvent] = []
    killed: list[int] = []
    spawned: list[int] = []  # pids of the local `ssh` processes that stream the log

    def on_event(event: JobEvent) -> None:
        events.append(event)
        if event.kind == "log" and event.message.startswith("job ") and not killed:  # before epoch 1
            if victim == "sshd-child":
                killed.extend(sshd.drop_connections())  # the server side of the link dies
            else:
                os.kill(spawned[-1], signal.SIGKILL)  # our own ssh client dies
                killed.append(spawned[-1])

    client = make_client(config, "box", on_event=on_event, retry=FAST_RETRY, on_spawn=spawned.append)
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=3, seed=2), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    await client.start(packed.job_id)
    final = await client.follow(packed.job_id)

    assert killed, "the tail connection should have been running under sshd"
    kinds = [e.kind for e in events]
    assert "reattaching" in kinds and "reattached" in kinds
    assert final["state"] == "done"  # the trainer never noticed: it runs detached
    lines = [e.message for e in events if e.kind == "log"]
    remote_log = (tmp_path / "box" / "jobs" / packed.job_id / "train.log").read_text().splitlines()
    assert lines == remote_log  # every line once, in order: tailing resumed at the right byte
    assert [e.data["epoch"] for e in events if e.kind == "progress"] == [1, 2, 3]


async def test_unreachable_host_is_a_clear_error(tmp_path: Path, sshd: SshBox) -> None:
    closed = free_port()
    profile = sshd.profile(tmp_path / "box", ssh_options=["-F", str(sshd.client_config), "-p", str(closed)])
    client = make_client(make_config(tmp_path, box=profile), "box")
    with pytest.raises(TransportError, match=rf"cannot reach the GPU box \(ssh gpubox\).*port {closed}.*refused"):
        await client.list_jobs()


@pytest.mark.parametrize("shim", ["no-torch", "no-python"])
async def test_remote_without_torch_is_a_clear_error(tmp_path: Path, sshd: SshBox, shim: str) -> None:
    if shim == "no-torch":
        fake = tmp_path / "shadow"
        (fake / "torch").mkdir(parents=True)
        (fake / "torch" / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
        python = tmp_path / "python-without-torch"
        python.write_text(f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{fake}" exec {sys.executable} "$@"\n')
        python.chmod(0o755)
        expected = r"cannot train with python '.*python-without-torch': .* cannot import torch.*Fix: point the profile's `python`"
    else:
        python = tmp_path / "no-such-python"
        expected = r"has no python .*no-such-python"
    config = make_config(tmp_path, box=sshd.profile(tmp_path / "box", python=str(python)))
    client = make_client(config, "box")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")
    if shim == "no-python":  # found before the dataset is sent
        with pytest.raises(RemoteEnvironmentError, match=expected):
            await client.ship(packed)
        return
    await client.ship(packed)  # a torch that is there but cannot be imported: found at the start
    with pytest.raises(RemoteEnvironmentError, match=expected):
        await client.start(packed.job_id)


def test_an_ssh_failure_quoted_mid_sentence_keeps_one_period() -> None:
    from gpu_jobs.transport.ssh import SshTransport

    error = SshTransport("gpubox")._unreachable("Warning: added host key\nroot@127.0.0.1: Permission denied (publickey).\n")
    assert "Permission denied (publickey). Check the profile's" in str(error)
    assert ".." not in str(error)
