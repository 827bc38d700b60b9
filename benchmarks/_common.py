"""Shared set-up of the benchmark scripts: quiet Ray, a small synthetic dataset, one JSON line out."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from anrl_ray.runtime import quiet_environment as quiet  # noqa: F401  (the one environment set-up)


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
