"""Shared fixtures: a tiny synthetic data root (session-wide) and a real local Ray runtime."""

import pytest

from anrl_ray.runtime import quiet_environment

quiet_environment()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Four small synthetic domains (O, C, I, M) in Parquet, generated once per test session."""
    from anrl_ray.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, seed=0, subjects=6, videos_per_subject=2, frames_per_video=2, img_size=32)
    return str(root)


@pytest.fixture(scope="module")
def ray_local():
    """A fresh local Ray runtime on this machine's 2 CPUs (never a running cluster), shut down after the module."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
