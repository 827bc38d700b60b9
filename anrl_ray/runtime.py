"""Process environment and Ray start-up: the one place that sets Ray's environment variables."""

from __future__ import annotations

import os


def quiet_environment() -> None:
    """Environment for non-interactive runs: no usage stats (no network), no progress bars, W&B offline."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
