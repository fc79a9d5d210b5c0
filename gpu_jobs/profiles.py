"""From a `[gpu.<profile>]` config table to a transport and a job client."""

from __future__ import annotations

from collections.abc import Callable

from engine.config import HotcoinConfig
from engine.config.sections.gpu import GpuProfile
from gpu_jobs.client import EventSink, JobClient, RetryPolicy
from gpu_jobs.errors import ProfileError
from gpu_jobs.transport.base import Transport
from gpu_jobs.transport.local import LocalTransport
from gpu_jobs.transport.ssh import SshTransport


def resolve_profile(config: HotcoinConfig, name: str) -> GpuProfile:
    profile = config.gpu.get(name)
    if profile is None:
        known = ", ".join(sorted(config.gpu)) or "none configured"
        raise ProfileError(
            f"no GPU profile {name!r} (known: {known}); add a [gpu.{name}] table with at least "
            f'host = "..." to config.toml (see `hotcoin config show --doc`)'
        )
    if profile.transport == "ssh" and not profile.host:
        raise ProfileError(
            f'GPU profile {name!r} has no host; set gpu.{name}.host (e.g. host = "gpu-box" in [gpu.{name}]) '
            f"or use transport = \"local\" to train on this machine"
        )
    return profile


def make_transport(profile: GpuProfile, on_spawn: Callable[[int], None] | None = None) -> Transport:
    if profile.transport == "local":
        return LocalTransport(on_spawn=on_spawn)
    assert profile.host is not None  # resolve_profile checked it
    return SshTransport(
        profile.host,
        user=profile.user,
        port=profile.port,
        identity_file=profile.identity_file,
        extra_args=profile.ssh_options,
        connect_timeout_s=profile.connect_timeout_s,
        keepalive_s=profile.keepalive_s,
        on_spawn=on_spawn,
    )


def make_client(
    config: HotcoinConfig,
    name: str,
    *,
    on_event: EventSink | None = None,
    retry: RetryPolicy | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> JobClient:
    profile = resolve_profile(config, name)
    return JobClient(
        make_transport(profile, on_spawn),
        workdir=profile.workdir,
        python=profile.python,
        env_setup=profile.env_setup,
        on_event=on_event,
        retry=retry,
    )
