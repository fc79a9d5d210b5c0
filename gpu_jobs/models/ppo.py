"""`ppo_sizing`: how much of the book to put in each of several coins (and cash), bar by bar.

The environment is built from candles: the observation is every coin's normalised features at
bar t plus the current weights; the action is a logit per coin and one for cash, softmaxed into
weights; the reward is the portfolio's log return over the next bar after a cost on turnover.
A small actor-critic learns it with PPO (clipped surrogate, GAE). Lift per out-of-sample fold =
exp(policy log return - equal-weight log return): 1.0 means no better than holding them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gpu_jobs.datasets import Dataset, check_enough_bars, normalisation, normalise
from gpu_jobs.models.base import EpochStats, ModelTask, Runtime, fold_lift_summary
from gpu_jobs.spec import JobSpec

REWARD_SCALE = 100.0  # log returns per bar are ~1e-3; scaled so the critic's targets are ~1


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, n_assets: int, hidden: int) -> None:
        super().__init__()
        self.actor = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_assets + 1))
        self.critic = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.log_std = nn.Parameter(torch.full((n_assets + 1,), -0.5))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [batch, obs_dim] -> (action mean [batch, n_assets + 1], value [batch])."""
        return self.actor(obs), self.critic(obs).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> tuple[torch.distributions.Normal, torch.Tensor]:
        mean, value = self(obs)
        return torch.distributions.Normal(mean, self.log_std.exp()), value


class SizingEnv:
    """Vectorised over `n` parallel episodes; all state is tensors on the runtime's device."""

    def __init__(self, feats: torch.Tensor, returns: torch.Tensor, cost: float) -> None:
        self.feats = feats  # [T, S, F] normalised
        self.returns = returns  # [T, S], return from bar t to t+1 (0 where unknown)
        self.cost = cost
        self.n_assets = int(returns.shape[1])

    @property
    def obs_dim(self) -> int:
        return int(self.feats.shape[1] * self.feats.shape[2]) + self.n_assets + 1

    def observe(self, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.feats[t].flatten(1), w], dim=1)

    def step(self, t: torch.Tensor, w_prev: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New weights and the per-episode log return of holding them over bar t -> t+1."""
        w = torch.softmax(action, dim=-1)
        gross = (w[:, :-1] * self.returns[t]).sum(dim=1)
        turnover = (w - w_prev).abs().sum(dim=1)
        return w, torch.log(torch.clamp(1.0 + gross - self.cost * turnover, min=1e-6))


class PpoSizingTask(ModelTask):
    model: ActorCritic

    def __init__(self, spec: JobSpec, ds: Dataset, rt: Runtime) -> None:
        p = spec.params
        self.spec, self.rt = spec, rt
        self.envs, self.rollout = int(p["envs"]), int(p["rollout"])
        self.update_epochs, self.minibatch = int(p["update_epochs"]), int(p["minibatch"])
        self.gamma, self.lam, self.clip, self.ent = (float(p[k]) for k in ("gamma", "gae_lambda", "clip", "entropy"))
        n = ds.n_bars
        self.split = int(n * (1.0 - float(p["test_fraction"])))
        check_enough_bars(spec, ds.close)
        self.mean, self.std = normalisation(ds.features, self.split)
        self.feats = torch.from_numpy(normalise(ds.features, self.mean, self.std)).to(rt.device)
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = ds.close[1:] / ds.close[:-1] - 1.0
        ret = np.nan_to_num(np.concatenate([ret, np.zeros((1, ds.close.shape[1]))]), nan=0.0, posinf=0.0, neginf=0.0)
        self.returns = torch.from_numpy(ret.astype(np.float32)).to(rt.device)
        self.env = SizingEnv(self.feats, self.returns, float(p["cost"]))
        self.arch = {"obs_dim": self.env.obs_dim, "n_assets": self.env.n_assets, "hidden": int(p["hidden"])}
        self.model = ActorCritic(**self.arch).to(rt.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(p["lr"]))
        self.valid = torch.from_numpy(np.isfinite(ds.close)).to(rt.device)
        edges = np.linspace(self.split, n - 1, int(p["folds"]) + 1).astype(np.int64)
        self.folds = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        self.feature_names = ds.feature_names
        self.symbols = ds.symbols

    def _start_weights(self, n: int) -> torch.Tensor:
        w = torch.zeros(n, self.env.n_assets + 1, device=self.rt.device)
        w[:, -1] = 1.0  # start in cash
        return w

    @torch.no_grad()
    def _collect(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        starts = torch.randint(0, self.split - self.rollout - 1, (self.envs,), generator=gen).to(self.rt.device)
        w = self._start_weights(self.envs)
        obs_l, act_l, logp_l, val_l, rew_l = [], [], [], [], []
        for k in range(self.rollout):
            t = starts + k
            obs = self.env.observe(t, w)
            dist, value = self.model.dist(obs)
            noise = torch.randn(dist.mean.shape, generator=gen).to(self.rt.device)
            action = dist.mean + dist.stddev * noise
            w, logret = self.env.step(t, w, action)
            obs_l.append(obs)
            act_l.append(action)
            logp_l.append(dist.log_prob(action).sum(-1))  # type: ignore[no-untyped-call]
            val_l.append(value)
            rew_l.append(logret * REWARD_SCALE)
        rewards, values = torch.stack(rew_l), torch.stack(val_l)  # [rollout, envs]
        adv = torch.zeros_like(rewards)
        last = torch.zeros(self.envs, device=self.rt.device)
        for k in reversed(range(self.rollout)):
            nxt = values[k + 1] if k + 1 < self.rollout else torch.zeros_like(last)
            delta = rewards[k] + self.gamma * nxt - values[k]
            last = delta + self.gamma * self.lam * last
            adv[k] = last
        return {
            "obs": torch.cat(obs_l),
            "act": torch.cat(act_l),
            "logp": torch.cat(logp_l),
            "adv": adv.flatten(),
            "ret": (adv + values).flatten(),
        }

    def train_epoch(self, epoch: int, gen: torch.Generator) -> EpochStats:
        """One PPO iteration: a rollout of `envs` x `rollout` steps, then clipped updates."""
        self.model.train()
        batch = self._collect(gen)
        adv = (batch["adv"] - batch["adv"].mean()) / (batch["adv"].std() + 1e-8)
        n = len(adv)
        total, count = 0.0, 0
        for _ in range(self.update_epochs):
            order = torch.randperm(n, generator=gen).to(self.rt.device)
            for lo in range(0, n, self.minibatch):
                idx = order[lo : lo + self.minibatch]
                with self.rt.autocast():
                    dist, value = self.model.dist(batch["obs"][idx])
                logp = dist.log_prob(batch["act"][idx]).sum(-1).float()  # type: ignore[no-untyped-call]
                ratio = torch.exp(logp - batch["logp"][idx])
                surr = torch.min(ratio * adv[idx], torch.clamp(ratio, 1 - self.clip, 1 + self.clip) * adv[idx])
                v_loss = (value.float() - batch["ret"][idx]).pow(2).mean()
                entropy = dist.entropy().sum(-1).mean()  # type: ignore[no-untyped-call]
                loss = -surr.mean() + 0.5 * v_loss - self.ent * entropy
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), 0.5)
                self.opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
        return EpochStats(loss=total / max(count, 1), samples=n)

    @torch.no_grad()
    def _fold_logrets(self, lo: int, hi: int) -> tuple[float, float]:
        self.model.eval()
        w = self._start_weights(1)
        policy = 0.0
        for t in range(lo, hi):
            tt = torch.tensor([t], device=self.rt.device)
            mean, _ = self.model(self.env.observe(tt, w))
            w, logret = self.env.step(tt, w, mean)
            policy += float(logret)
        valid = self.valid[lo:hi].float()
        eq = (self.returns[lo:hi] * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        return policy, float(torch.log1p(eq).sum())

    def evaluate(self) -> dict[str, Any]:
        lifts: list[float | None] = []
        detail = []
        for lo, hi in self.folds:
            policy, equal = self._fold_logrets(lo, hi)
            lifts.append(float(np.exp(policy - equal)))
            detail.append({"policy_logret": policy, "equal_weight_logret": equal, "bars": hi - lo})
        samples = sum(hi - lo for lo, hi in self.folds)
        return {
            "oos": fold_lift_summary(lifts, samples, "equal weight over the coins with a bar, rebalanced each bar"),
            "folds": detail,
        }

    def export(self) -> dict[str, Any]:
        return {
            "format": 1,
            "task": self.spec.task,
            "arch": self.arch,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "norm_mean": torch.from_numpy(self.mean),
            "norm_std": torch.from_numpy(self.std),
            "feature_names": list(self.feature_names),
            "symbols": list(self.symbols),
        }
