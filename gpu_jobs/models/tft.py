"""`tft_heat`: forecast the next `horizon` bars of heat (100 x |1-bar log return|) from a
feature window, with a small temporal-fusion-style model: per-bar variable selection, an LSTM
encoder, attention from the last step over the window, a gated residual, one head per horizon.
Lift per fold = MSE of the persistence baseline (the window's mean heat) / MSE of the model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gpu_jobs.datasets import Dataset
from gpu_jobs.models.base import Runtime, SequenceTask, fold_lift_summary
from gpu_jobs.spec import JobSpec


class VariableSelection(nn.Module):
    """Embed each feature separately and mix them with softmax weights computed from the bar,
    so the model learns which features matter at each step (and the weights can be read out)."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, hidden) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_features, hidden))
        self.select = nn.Sequential(nn.Linear(n_features, hidden), nn.ELU(), nn.Linear(hidden, n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = x.unsqueeze(-1) * self.weight + self.bias  # [B, L, F, H]
        w = torch.softmax(self.select(x), dim=-1)  # [B, L, F]
        return (w.unsqueeze(-1) * emb).sum(dim=-2), w


class HeatTFT(nn.Module):
    def __init__(self, n_features: int, hidden: int, heads: int, horizon: int) -> None:
        super().__init__()
        self.select = VariableSelection(n_features, hidden)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.gate = nn.Linear(hidden, 2 * hidden)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, seq_len, features] -> heat forecast [batch, horizon]."""
        v, _ = self.select(x)
        h, _ = self.encoder(v)
        last = h[:, -1:]
        ctx, _ = self.attn(last, h, h, need_weights=False)
        a, b = self.gate(ctx).chunk(2, dim=-1)
        z = self.norm(last + a * torch.sigmoid(b)).squeeze(1)
        out: torch.Tensor = self.head(z)
        return out


class TftHeatTask(SequenceTask):
    def __init__(self, spec: JobSpec, ds: Dataset, rt: Runtime) -> None:
        p = spec.params
        self.horizon = int(p["horizon"])
        super().__init__(spec, ds, rt)
        with np.errstate(divide="ignore", invalid="ignore"):
            heat = 100.0 * np.abs(np.log(ds.close[1:] / ds.close[:-1]))
        heat = np.concatenate([np.full((1, ds.close.shape[1]), np.nan), heat]).astype(np.float32)
        steps = np.arange(1, self.horizon + 1)
        self.y = heat[self.t[:, None] + steps[None, :], self.s[:, None]]  # [N, horizon]
        past = np.arange(-self.seq_len + 2, 1)  # heats inside the window (its first bar has none)
        self.baseline = np.nanmean(heat[self.t[:, None] + past[None, :], self.s[:, None]], axis=1)
        self.arch = {
            "n_features": len(ds.feature_names),
            "hidden": int(p["hidden"]),
            "heads": int(p["heads"]),
            "horizon": self.horizon,
        }
        self.model = HeatTFT(**self.arch).to(rt.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(p["lr"]))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out, y)

    def evaluate(self) -> dict[str, Any]:
        lifts: list[float | None] = []
        for f in self.fold_idx:
            mse_model = float(((self.outputs(f) - self.y[f]) ** 2).mean())
            mse_base = float(((self.baseline[f, None] - self.y[f]) ** 2).mean())
            lifts.append(mse_base / mse_model if mse_model > 0 else None)
        samples = sum(len(f) for f in self.fold_idx)
        return {
            "oos": fold_lift_summary(lifts, samples, "persistence: the window's mean heat, MSE ratio"),
            "train_samples": len(self.train_idx),
        }
