"""A real two-node Ray cluster on this machine (Ray's own cluster utilities): a search through
--address whose DDP workers run on both nodes, all results in one experiment; then the worker node
is killed mid-epoch and the trial resumes from its last checkpoint on the remaining node."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import epoch_records, read_records, run_state

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, resources={"worker_node": 1})
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def _search(cluster, tmp_path: Path, tiny_data: str, name: str, epochs: int) -> subprocess.Popen:
    argv = [sys.executable, str(ROOT / "run_search.py"), "--address", cluster.address, "--data", tiny_data,
            "--storage", str(tmp_path), "--name", name, "--num-samples", "1", "--profile", "cpu", "--epochs", str(epochs),
            "--workers-per-trial", "2", "--cpus-per-worker", "0.5", "--scheduler", "none", "--wandb", "off",
            "--max-failures", "2", "--set", "placement=SPREAD", "--set", "max_steps_per_epoch=3"]
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})


def test_ddp_across_two_nodes_then_node_loss(two_nodes, tiny_data, tmp_path):
    cluster, worker = two_nodes
    nodes = {cluster.head_node.node_id, worker.node_id}
    driver = _search(cluster, tmp_path, tiny_data, "MN", epochs=3)
    exp = Experiment(tmp_path / "MN")
    killed_after = None
    deadline = time.time() + 1200
    while driver.poll() is None and time.time() < deadline:
        runs = [p for p in exp.trials.glob("trial_*") if records_path(p).exists()] if exp.trials.is_dir() else []
        recs = epoch_records(read_records(records_path(runs[0]))) if runs else []
        if recs and killed_after is None:
            # both DDP ranks of the first epoch ran on different nodes of the cluster
            assert {w["node_id"] for w in recs[0]["workers"]} == nodes, recs[0]["workers"]
            killed_after = len(recs)
            cluster.remove_node(worker)  # the worker node dies mid-epoch (its raylet and workers killed)
        time.sleep(0.5)
    assert driver.wait(timeout=60) == 0, (tmp_path / "MN.log").read_text()[-4000:]
    assert killed_after is not None and killed_after < 3

    (run,) = [p for p in exp.trials.glob("trial_*") if records_path(p).exists()]
    recs = read_records(records_path(run))
    epochs = epoch_records(recs)
    assert [r["epoch"] for r in epochs] == [0, 1, 2]  # every epoch exactly once
    assert run_state(recs)["state"] == "completed"
    after = epochs[-1]["workers"]
    assert {w["node_id"] for w in after} == {cluster.head_node.node_id}  # resumed on the remaining node
    rows = [line for line in exp.leaderboard_md.read_text().splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1 and "| completed |" in rows[0]  # counted once
    assert json.loads((exp.best / "selection.json").read_text())["trial"] == run.name
