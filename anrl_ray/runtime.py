"""Process environment and Ray start-up: the one place that sets Ray's environment variables."""

from __future__ import annotations

import os


def quiet_environment() -> None:
    """Environment for non-interactive runs: no usage stats (no network), no progress bars, W&B offline."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
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


def check_data(data_root: str, protocol: str) -> dict:
    """Check the data a protocol needs before Ray starts (manifests, both classes, sizes, checksums).

    Raises:
        UserError: every problem found, naming files and fixes (exit code 2 at the CLI).
    """
    from anrl_ray.data.checks import check_data_root
    from anrl_ray.protocols import get_protocol

    return check_data_root(data_root, get_protocol(protocol).data_needs())


def loopback_only() -> None:
    """Make a local Ray bind every service (GCS, raylet, workers, agents, dashboard) to 127.0.0.1.

    Ray 2.60 takes the node IP from the routable interface and its servers listen on it or on
    every interface. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray treats the machine as a
    single-node one and uses the loopback IP as the node IP, and its servers bind to it
    (measured: tests/test_runtime.py). Ray reads the variable when ``ray`` is imported, so the
    constant is set too when it already was; Ray's own processes inherit the environment.
    """
    import sys

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


# A local Ray tuned for short trials (docs/NOTES.md, "Where a trial's fixed cost goes"): Ray Train's
# controller polls its workers for reports and for the end of the run every 2 s by default (a second
# per trial lost on average at its end), starts a preemption watcher actor per trial (node drains on
# cloud spot nodes: none on one machine) and Prometheus gauges for the dashboard's Grafana.
LOCAL_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
}
# Ray keeps at most this many idle worker processes (default: one per CPU). Every trial starts
# more actors than that, so by default the task workers that Ray Data's decoding ran in are killed
# between trials and every trial pays new processes that import the data pipeline again
# (~2 s on its first epoch on 2 cores). Idle processes cost memory only.
LOCAL_IDLE_WORKERS = 8


def local_ray_options(num_cpus: int | None = None) -> dict:
    """``ray.init`` options of a local Ray for short trials: the worker pool's size (and, set in this
    process's environment for Ray's processes to inherit, ``LOCAL_TRAIN_ENV`` where not set already)."""
    for key, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    cpus = num_cpus or os.cpu_count() or 1
    return {"_system_config": {"num_workers_soft_limit": max(LOCAL_IDLE_WORKERS, cpus)}}


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Start (or connect to) Ray: a fresh local one by default, every service on 127.0.0.1."""
    if address is None:
        loopback_only()
    import ray

    if ray.is_initialized():
        return
    from anrl_ray import storage

    # the S3 endpoint / region reach every task and actor of the job (credentials do not: each node has its own)
    env = {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
                        **storage.shared_env()}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=log_to_driver)
    else:
        # The dashboard (State API) must run: without it Ray Train cannot clean up the placement
        # group of a trial that Tune stopped early, and the next trial waits for CPUs forever.
        # It binds to localhost only. address="local": never join a cluster running on this machine.
        # Train's placement-group cleaner finds the State API by RAY_API_SERVER_ADDRESS, else by scanning
        # for GCS processes, which fails when other Ray instances run on the machine: name ours.
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = env["env_vars"]["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                 runtime_env=env, log_to_driver=log_to_driver, **local_ray_options(num_cpus))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
