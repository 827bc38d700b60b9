"""Shared set-up of the benchmark scripts: quiet Ray, a small synthetic dataset, one JSON line out."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def quiet() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("WANDB_MODE", "offline")


def dataset(data: str | None, **size) -> str:
    """The data root to benchmark on: ``--data`` or a fresh small synthetic benchmark."""
    if data:
        return data
    from anrl_ray.data.synthetic import generate

    root = Path(tempfile.mkdtemp(prefix="anrl-bench-")) / "data"
    generate(root, seed=0, **size)
    return str(root)


def emit(result: dict) -> None:
    print(json.dumps(result, sort_keys=True), flush=True)
