"""A real two-node Ray cluster on this machine (Ray's own cluster utilities): a search through
--address whose DDP workers run on both nodes, all results in one experiment; then the worker node
is killed mid-epoch and the trial resumes from its last checkpoint on the remaining node. Run twice:
with the experiment in a folder, and in S3 (a local S3-compatible server), where nothing of the
experiment lands on local disk but the driver's scratch."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anrl_ray import storage
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import epoch_records, read_records, run_state

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(params=["folder", "s3"])
def where(request, tmp_path):
    """Where the experiments go: a local folder, or a bucket of a local S3 server (before the
    cluster starts, so that its nodes get the AWS variables)."""
    if request.param == "s3":
        return request.getfixturevalue("s3") + "/runs"
    return str(tmp_path / "runs")


@pytest.fixture
def two_nodes(where):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, resources={"worker_node": 1})
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def _search(cluster, where: str, tmp_path: Path, tiny_data: str, name: str, epochs: int) -> subprocess.Popen:
    argv = [sys.executable, str(ROOT / "run_search.py"), "--address", cluster.address, "--data", tiny_data,
            "--storage", where, "--name", name, "--num-samples", "1", "--profile", "cpu", "--epochs", str(epochs),
            "--workers-per-trial", "2", "--cpus-per-worker", "0.5", "--scheduler", "none", "--wandb", "off",
            "--max-failures", "2", "--set", "placement=SPREAD", "--set", "max_steps_per_epoch=3"]
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, cwd=tmp_path)


def _runs(exp: Experiment) -> list[str]:
    """Runs (of the folder or the URI) that have a records file."""
    return [n for n in storage.list_names(exp.trials_location) if storage.exists(records_path(exp.run_location(n)))]


def test_ddp_across_two_nodes_then_node_loss(where, two_nodes, tiny_data, tmp_path):
    cluster, worker = two_nodes
    nodes = {cluster.head_node.node_id, worker.node_id}
    driver = _search(cluster, where, tmp_path, tiny_data, "MN", epochs=3)
    exp = Experiment.at(where, "MN")
    killed_after = None
    deadline = time.time() + 1200
    while driver.poll() is None and time.time() < deadline:
        runs = _runs(exp)
        recs = epoch_records(read_records(records_path(exp.run_location(runs[0])))) if runs else []
        if recs and killed_after is None:
            # both DDP ranks of the first epoch ran on different nodes of the cluster
            assert {w["node_id"] for w in recs[0]["workers"]} == nodes, recs[0]["workers"]
            killed_after = len(recs)
            cluster.remove_node(worker)  # the worker node dies mid-epoch (its raylet and workers killed)
        time.sleep(0.5)
    assert driver.wait(timeout=60) == 0, (tmp_path / "MN.log").read_text()[-4000:]
    assert killed_after is not None and killed_after < 3

    (run,) = _runs(exp)
    recs = read_records(records_path(exp.run_location(run)))
    epochs = epoch_records(recs)
    assert [r["epoch"] for r in epochs] == [0, 1, 2]  # every epoch exactly once
    assert run_state(recs)["state"] == "completed"
    after = epochs[-1]["workers"]
    assert {w["node_id"] for w in after} == {cluster.head_node.node_id}  # resumed on the remaining node
    leaderboard = storage.read_text(storage.join(exp.location, "leaderboard.md"))
    rows = [line for line in leaderboard.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1 and "| completed |" in rows[0]  # counted once
    assert json.loads(storage.read_text(storage.join(exp.location, "best", "selection.json")))["trial"] == run
    if exp.remote:  # nothing of the experiment on local disk but the driver's scratch (and the driver's log)
        scratch = Path(os.environ["ANRL_RAY_SCRATCH"])
        local = [p for p in tmp_path.rglob("*") if p.is_file() and scratch not in p.parents]
        assert [p.name for p in local] == ["MN.log"], local
        assert storage.is_file(storage.join(exp.run_location(run), epochs[-1]["checkpoint"], "checkpoint.pt"))
