"""Profiles to transports, ssh command lines, and the box-side job bookkeeping."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from engine.config.sections.gpu import GpuProfile
from gpu_jobs import remote
from gpu_jobs.__main__ import main as remote_main
from gpu_jobs.client import check_job_id
from gpu_jobs.errors import GpuJobError, ProfileError
from gpu_jobs.profiles import make_transport, resolve_profile
from gpu_jobs.transport.local import LocalTransport
from gpu_jobs.transport.ssh import SshTransport
from tests.gpu_jobs.conftest import make_config


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    config = make_config(tmp_path, h800={"host": "gpu"}, a100={"host": "gpu2"})
    with pytest.raises(ProfileError, match=r"no GPU profile 'h100' \(known: a100, h800\); add a \[gpu.h100\] table"):
        resolve_profile(config, "h100")


def test_ssh_profile_without_host_names_the_key(tmp_path: Path) -> None:
    config = make_config(tmp_path, h800={"user": "me"})
    with pytest.raises(ProfileError, match=r"GPU profile 'h800' has no host; set gpu\.h800\.host"):
        resolve_profile(config, "h800")


def test_profiles_make_their_transport() -> None:
    assert isinstance(make_transport(GpuProfile(transport="local")), LocalTransport)
    ssh = make_transport(
        GpuProfile(host="gpu", user="me", port=2222, identity_file=Path("/k"), ssh_options=["-o", "ProxyJump=bastion"])
    )
    assert isinstance(ssh, SshTransport)
    argv = ssh.ssh_argv("echo hi")
    assert argv[0] == "ssh" and argv[-3:] == ["--", "gpu", "umask 077; echo hi"]
    for pair in (["-o", "BatchMode=yes"], ["-o", "ConnectTimeout=10"], ["-o", "ServerAliveInterval=5"],
                 ["-p", "2222"], ["-l", "me"], ["-i", "/k"], ["-o", "ProxyJump=bastion"]):  # fmt: skip
        assert any(argv[i : i + 2] == pair for i in range(len(argv))), pair


@pytest.mark.parametrize("job_id", ["../etc", "lstm_hot-xyz", "lstm_hot-0123456789abcdef; rm -rf /"])
def test_job_ids_are_checked_before_reaching_a_shell(job_id: str) -> None:
    with pytest.raises(GpuJobError, match="is not a job id"):
        check_job_id(job_id)


def test_environment_report_on_this_box() -> None:
    report = remote.environment()
    assert report["ok"] is True and report["torch"].startswith("2.") and report["python"] == sys.version.split()[0]
    assert report["cuda"] in (True, False)


def test_status_says_crashed_when_the_trainer_is_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = remote.JobDir(tmp_path / "lstm_hot-0123456789abcdef")
    job.root.mkdir()
    (job.root / ".unpacked").touch()
    job.spec.write_text(json.dumps({"task": "lstm_hot"}))
    job.pid.write_text("999999999\n")
    remote.update_status(job, state="running", epoch=2)
    assert remote.effective_status(job)["state"] == "crashed"
    assert remote_main(["status", str(job.root)]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "crashed"
    assert [j["task"] for j in remote.list_jobs(tmp_path)] == ["lstm_hot"]
    assert remote.cancel(job)["cancel_sent"] is False


def test_tail_resumes_at_a_byte_offset(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    job = remote.JobDir(tmp_path / "j")
    job.root.mkdir()
    job.log.write_bytes(b"line one\nline two\n")
    remote.update_status(job, state="done")
    assert remote.tail(job, offset=9, follow=True) == 0
    assert capsysbinary.readouterr().out == b"line two\n"


def test_start_refuses_a_folder_that_is_not_a_job(tmp_path: Path) -> None:
    rc, answer = remote.start(remote.JobDir(tmp_path))
    assert rc == remote.EXIT_USAGE and "not a shipped job" in answer["error"]


@pytest.mark.parametrize(
    ("stderr", "message"),
    [
        pytest.param("scp: Connection closed\n", r"connection to the GPU box \(ssh gpubox\) lost while fetching job files \(scp: Connection closed\); run the same command again", id="closed"),
        pytest.param("client_loop: send disconnect: Broken pipe\nlost connection\n", r"lost while fetching job files \(lost connection\)", id="broken-pipe"),
        pytest.param("ssh: connect to host gpubox port 22: Connection refused\n", r"cannot reach the GPU box \(ssh gpubox\).*Check the profile's host/port", id="refused"),
        pytest.param("scp: /box/out/model.pt: No such file or directory\n", r"fetching job files failed \(ssh gpubox\): scp: /box/out/model\.pt: No such file", id="missing-file"),
    ],
)
def test_a_failed_copy_says_whether_the_box_was_unreachable_or_the_link_dropped(stderr: str, message: str) -> None:
    error = SshTransport("gpubox").copy_error("fetching job files", stderr, 1)
    assert re.search(message, str(error)), str(error)
