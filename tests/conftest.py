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


@pytest.fixture
def s3(monkeypatch, tmp_path_factory):
    """A throwaway S3-compatible server (moto's threaded server) on 127.0.0.1 with one bucket; the
    AWS variables of this process point at it (Ray processes started now inherit them). Yields the
    bucket's URI; the server stops after the test."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "anrl-test", "AWS_SECRET_ACCESS_KEY": "anrl-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("ANRL_RAY_SCRATCH", str(tmp_path_factory.mktemp("driver-scratch")))
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="anrl")
    try:
        yield "s3://anrl"
    finally:
        server.stop()
