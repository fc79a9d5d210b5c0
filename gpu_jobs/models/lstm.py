"""`lstm_hot`: will this coin be up by `threshold` within `horizon` bars? An LSTM over a window
of per-bar features, scored by lift: the hit rate of its top decile over the fold's base rate."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gpu_jobs.datasets import Dataset
from gpu_jobs.models.base import Runtime, SequenceTask, fold_lift_summary
from gpu_jobs.spec import JobSpec


class HotLSTM(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, seq_len, features] -> logit of "hot" [batch]."""
        out, _ = self.lstm(x)
        logit: torch.Tensor = self.head(out[:, -1]).squeeze(-1)
        return logit


def top_decile_lift(score: np.ndarray, y: np.ndarray) -> float | None:
    base = float(y.mean()) if len(y) else 0.0
    if base == 0.0:
        return None  # no positive label in this fold: lift is undefined
    k = max(1, len(y) // 10)
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean()) / base


class LstmHotTask(SequenceTask):
    def __init__(self, spec: JobSpec, ds: Dataset, rt: Runtime) -> None:
        p = spec.params
        self.horizon = int(p["horizon"])
        super().__init__(spec, ds, rt)
        ret = ds.close[self.t + self.horizon, self.s] / ds.close[self.t, self.s] - 1.0
        self.y = (ret >= float(p["threshold"])).astype(np.float32)
        self.arch = {"n_features": len(ds.feature_names), "hidden": int(p["hidden"]), "layers": int(p["layers"])}
        self.model = HotLSTM(**self.arch).to(rt.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(p["lr"]))
        pos = float(self.y[self.train_idx].mean())
        weight = (1.0 - pos) / pos if 0.0 < pos < 1.0 else 1.0
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, device=rt.device))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.loss_fn(out, y)
        return loss

    def evaluate(self) -> dict[str, Any]:
        lifts = [top_decile_lift(self.outputs(f), self.y[f]) for f in self.fold_idx]
        samples = sum(len(f) for f in self.fold_idx)
        return {
            "oos": fold_lift_summary(lifts, samples, "fold base rate of hot labels (random ranking)"),
            "oos_base_rates": [float(self.y[f].mean()) for f in self.fold_idx],
            "train_samples": len(self.train_idx),
        }
