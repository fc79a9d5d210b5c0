"""Task name -> training task class, and model-file `arch` -> torch module, in one table each."""

from __future__ import annotations

from typing import Any

from torch import nn

from gpu_jobs.datasets import Dataset
from gpu_jobs.models.base import Runtime, TrainTask
from gpu_jobs.models.lstm import HotLSTM, LstmHotTask
from gpu_jobs.models.ppo import ActorCritic, PpoSizingTask
from gpu_jobs.models.tft import HeatTFT, TftHeatTask
from gpu_jobs.spec import JobSpec

TASK_CLASSES: dict[str, type[LstmHotTask] | type[TftHeatTask] | type[PpoSizingTask]] = {
    "lstm_hot": LstmHotTask,
    "tft_heat": TftHeatTask,
    "ppo_sizing": PpoSizingTask,
}
MODEL_CLASSES: dict[str, type[nn.Module]] = {"lstm_hot": HotLSTM, "tft_heat": HeatTFT, "ppo_sizing": ActorCritic}


def build_task(spec: JobSpec, ds: Dataset, rt: Runtime) -> TrainTask:
    return TASK_CLASSES[spec.task](spec, ds, rt)


def build_model(task: str, arch: dict[str, Any]) -> nn.Module:
    """The module a model file's `arch` describes (weights are loaded by the caller)."""
    if task not in MODEL_CLASSES:
        raise ValueError(f"unknown model task {task!r}; known: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[task](**arch)
