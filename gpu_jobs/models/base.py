"""What the epoch loop needs from a task, and what every task shares: the device to run on
and the supervised sequence machinery (windows, normalisation, batches, folds)."""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from gpu_jobs.datasets import (
    Dataset,
    check_enough_bars,
    normalisation,
    normalise,
    time_folds,
    window_index,
)
from gpu_jobs.spec import JobSpec


@dataclass(frozen=True)
class Runtime:
    """Where tensors live; bf16 autocast is used on CUDA when the card supports it."""

    device: torch.device
    bf16: bool

    @classmethod
    def pick(cls) -> Runtime:
        if torch.cuda.is_available():
            return cls(torch.device("cuda"), bool(torch.cuda.is_bf16_supported()))
        return cls(torch.device("cpu"), False)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> str:
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            return f"cuda {props.name} {props.total_memory / 2**30:.0f} GiB{' bf16' if self.bf16 else ''}"
        return "cpu (no CUDA device)"


@dataclass(frozen=True)
class EpochStats:
    loss: float
    samples: int


class TrainTask(Protocol):
    """One trainable task. `train_epoch` must draw all randomness from `gen`, which the loop
    seeds per epoch, so a run resumed from a checkpoint repeats an uninterrupted one."""

    def train_epoch(self, epoch: int, gen: torch.Generator) -> EpochStats: ...

    def evaluate(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self) -> dict[str, Any]: ...


def fold_lift_summary(lifts: list[float | None], samples: int, baseline: str) -> dict[str, Any]:
    finite = [v for v in lifts if v is not None and math.isfinite(v)]
    return {
        "fold_lifts": [None if v is None or not math.isfinite(v) else float(v) for v in lifts],
        "mean_lift": float(np.mean(finite)) if len(finite) == len(lifts) and finite else None,
        "samples": int(samples),
        "baseline": baseline,
    }


class ModelTask:
    """A task that trains one model with one optimiser: its checkpoint is the two states."""

    model: nn.Module
    opt: torch.optim.Optimizer

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])


class SequenceTask(ModelTask, ABC):
    """Supervised learning on fixed-length feature windows ending at bar t, split by time: the
    epoch loop, batched inference and export, shared by the sequence tasks.

    Subclasses set `horizon` before calling `__init__`, then the targets `y` (one row per
    window (t, s)), the model with its `arch`, and the optimiser; they give the loss and the
    out-of-sample evaluation."""

    horizon: int
    arch: dict[str, Any]
    y: np.ndarray

    def __init__(self, spec: JobSpec, ds: Dataset, rt: Runtime) -> None:
        p = spec.params
        self.spec = spec
        self.rt = rt
        self.seq_len = int(p["seq_len"])
        self.batch_size = int(p["batch_size"])
        self.max_train = int(p["max_train_samples"])
        check_enough_bars(spec, ds.close)
        t, s = window_index(ds.close, self.seq_len, self.horizon)
        train, folds = time_folds(t, ds.n_bars, float(p["test_fraction"]), int(p["folds"]), self.horizon)
        split = int(ds.n_bars * (1.0 - float(p["test_fraction"])))
        self.mean, self.std = normalisation(ds.features, split)
        seen = np.asarray(np.isfinite(ds.features[:split]).any(axis=(0, 1)), dtype=bool)
        self.unseen = [n for i, n in enumerate(ds.feature_names) if not seen[i]]
        self.feats = torch.from_numpy(normalise(ds.features, self.mean, self.std)).to(rt.device)
        self.t, self.s = t, s
        self.train_idx = np.nonzero(train)[0]
        self.fold_idx = [np.nonzero(f)[0] for f in folds]
        self.offsets = torch.arange(-self.seq_len + 1, 1, device=rt.device)
        self.feature_names = ds.feature_names

    def windows(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(self.t[idx]).to(self.rt.device)
        s = torch.from_numpy(self.s[idx]).to(self.rt.device)
        return self.feats[t[:, None] + self.offsets[None, :], s[:, None]]

    def batches(self, idx: np.ndarray) -> Iterator[np.ndarray]:
        for lo in range(0, len(idx), self.batch_size):
            yield idx[lo : lo + self.batch_size]

    def epoch_indices(self, gen: torch.Generator) -> np.ndarray:
        order = torch.randperm(len(self.train_idx), generator=gen).numpy()
        return np.asarray(self.train_idx[order[: self.max_train]])

    @abstractmethod
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch's model output (in float32) against its targets."""

    def train_epoch(self, epoch: int, gen: torch.Generator) -> EpochStats:
        self.model.train()
        total, n = 0.0, 0
        for b in self.batches(self.epoch_indices(gen)):
            x = self.windows(b)
            y = torch.from_numpy(self.y[b]).to(self.rt.device)
            with self.rt.autocast():
                out = self.model(x)
            loss = self.loss(out.float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.opt.step()
            total += float(loss.detach()) * len(b)
            n += len(b)
        return EpochStats(loss=total / max(n, 1), samples=n)

    @torch.no_grad()
    def outputs(self, idx: np.ndarray) -> np.ndarray:
        """The model's output for windows `idx`, in batches, shaped like their targets."""
        self.model.eval()
        out = []
        for b in self.batches(idx):
            with self.rt.autocast():
                out.append(self.model(self.windows(b)).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, *self.y.shape[1:]), np.float32)

    def export(self) -> dict[str, Any]:
        return {
            "format": 1,
            "task": self.spec.task,
            "arch": self.arch,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "norm_mean": torch.from_numpy(self.mean),
            "norm_std": torch.from_numpy(self.std),
            "seq_len": self.seq_len,
            "feature_names": list(self.feature_names),
            "unseen_features": list(self.unseen),
        }
