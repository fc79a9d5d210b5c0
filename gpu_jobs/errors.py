"""Errors of the trading-box side of GPU jobs, a branch of the engine's tree:

    HotcoinError
    └── GpuJobError
        ├── ProfileError             no such `[gpu.<profile>]`, or one that lacks what it needs
        ├── TransportError           the box cannot be reached (refused, timeout, auth, copy failed)
        │   └── ConnectionLost       the link dropped and re-attaching kept failing; the job
        │                            itself keeps running on the box
        ├── RemoteEnvironmentError   the box cannot train (no such python, no torch)
        │   └── WorkdirFullError     the box's workdir has no space left; the job is intact,
        │                            the same command carries on once space is freed
        ├── JobFailedError           the job ended failed, cancelled or crashed
        └── TrainingDataError        the candles asked for cannot make a training set
                                     (`gpu_jobs.datasets.DatasetError`, which the GPU box raises
                                     too and so cannot be a HotcoinError itself)
"""

from __future__ import annotations

from engine.errors import HotcoinError


class GpuJobError(HotcoinError):
    """Base of GPU-job errors."""


class ProfileError(GpuJobError):
    """A GPU profile that does not exist or is incomplete; names the config key to set."""


class TransportError(GpuJobError):
    """The GPU box could not be reached or a copy failed."""


class ConnectionLost(TransportError):
    """Re-attaching after a dropped connection failed every retry."""


class RemoteEnvironmentError(GpuJobError):
    """The GPU box's interpreter cannot run training jobs."""


class WorkdirFullError(RemoteEnvironmentError):
    """A write on the GPU box failed for lack of space (ENOSPC); names the workdir and its free MB."""


class JobFailedError(GpuJobError):
    """The job ended in a state other than `done`."""

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state


class TrainingDataError(GpuJobError):
    """The candles asked for (`--data`, `--symbols`, `--interval`) cannot make a training set."""
