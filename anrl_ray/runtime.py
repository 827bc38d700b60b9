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


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded with every result)."""
    import subprocess
    from pathlib import Path

    from anrl_ray import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def resolve_data_root(data: str | None) -> str:
    """The data root to use: the user's, or the synthetic benchmark generated once into a cache folder."""
    from pathlib import Path

    from anrl_ray.errors import UserError

    if data:
        root = Path(data)
        if not root.is_dir():
            raise UserError(f"--data {data}: no such folder (expected a converted data root with O/, C/, I/, M/)")
        return str(root.resolve())
    from anrl_ray.data.synthetic import ensure_default_benchmark

    print("using the built-in synthetic benchmark (generated once into a cache folder, ~12 s)", flush=True)
    return ensure_default_benchmark()


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start (or connect to) Ray: a fresh local one by default, dashboard on localhost only."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
    else:
        # The dashboard (State API) must run: without it Ray Train cannot clean up the placement
        # group of a trial that Tune stopped early, and the next trial waits for CPUs forever.
        # It binds to localhost only. address="local": never join a cluster running on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", runtime_env=env)
