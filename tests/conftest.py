"""Shared fixtures: a tiny synthetic data root (session-wide) and a real local Ray runtime."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Four small synthetic domains (O, C, I, M) in Parquet, generated once per test session."""
    from anrl_ray.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, seed=0, subjects=6, videos_per_subject=2, frames_per_video=2, img_size=32)
    return str(root)


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray runtime on this machine's 2 CPUs, shut down after the module."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
