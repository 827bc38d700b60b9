"""A real Ray Train trial: 2 DDP workers on CPU, records, checkpoints, resume."""

import json

import pytest
import torch

from anrl_ray.config import load_config
from anrl_ray.records import read_records
from anrl_ray.selection import select_epoch_oracle, select_epoch_source_val
from anrl_ray.checkpoint import load_checkpoint
from anrl_ray.experiment import RECORDS_FILE
from anrl_ray.trial import run_trial

pytestmark = pytest.mark.integration


def tiny_cfg(data, **kw):
    base = {"protocol": "OCI_M", "data_root": data, "img_size": 16, "width": 0.125, "epochs": 2,
            "batch_per_class": 2, "max_steps_per_epoch": 3, "num_workers": 2, "lr": 1e-3, "eval_batch_size": 64}
    return load_config(None, {**base, **kw}, profile="cpu")


def _started(actor_class: str) -> int:
    """Actors of that class this Ray runtime has started (alive or dead), read from the GCS (the
    state API needs the dashboard, which the tests' runtime leaves out)."""
    import ray._private.state

    return sum(a.get("ActorClassName") == actor_class for a in ray._private.state.actors().values())


@pytest.fixture(scope="module", params=["train_split", "rank_streams"])
def two_epoch_run(request, tiny_data, ray_local, tmp_path_factory):
    """Both ways a trial's ranks get data: Ray Train's DataConfig split (a run outside a search), and
    every rank executing its own share (a search: the splits cached and shared)."""
    import ray

    from anrl_ray.data import pipeline

    own = request.param == "rank_streams"
    if own:
        pipeline.share_encoded_splits()
    out = tmp_path_factory.mktemp("trial")
    cfg = tiny_cfg(tiny_data)
    assert pipeline.rank_streams_available(cfg.data_root, ["O", "C", "I", "M"]) == own
    before = {c: _started(c) for c in ("SplitCoordinator", "DatasetManager")}
    result = run_trial(cfg, storage_path=str(out), name="full")
    assert result.error is None, result.error
    # the ranks' own streams need no Ray Train dataset manager nor Ray Data split coordinator;
    # DataConfig starts a manager and a coordinator per dataset
    started = {c: _started(c) - n for c, n in before.items()}
    assert started == ({"SplitCoordinator": 0, "DatasetManager": 0} if own else {"SplitCoordinator": 2, "DatasetManager": 1})
    yield cfg, out
    if own:
        ray.kill(pipeline._shared_splits_handle)
        pipeline._shared_splits_handle = None


def test_trial_reports_records_and_checkpoints(two_epoch_run):
    cfg, out = two_epoch_run
    recs = read_records(out / "full" / RECORDS_FILE)
    assert [r["epoch"] for r in recs] == [0, 1]
    for r in recs:
        assert r["config"]["protocol"] == "OCI_M" and r["sources"] == ["O", "C", "I"] and r["target"] == "M"
        assert r["world_size"] == 2 and r["steps_per_epoch"] == 3
        assert 0.0 <= r["val"]["auc"] <= 1.0 and 0.0 <= r["target_metrics"]["hter"] <= 1.0
        assert {"source_val_eer", "target_eer"} <= set(r["thresholds"])
        assert r["code_version"] and r["seeds"]["seed"] == cfg.seed
        # validation is source data only, and every target test video was scored
        assert r["val"]["videos"] > 0 and r["target_metrics"]["videos"] > 0
        # DDP kept both ranks' parameters identical
        a, b = r["rank_param_checksums"]
        assert a == pytest.approx(b, rel=0, abs=1e-9)
    for epoch in (0, 1):
        ckpt = out / "full" / f"checkpoint_epoch{epoch:04d}"
        state = load_checkpoint(ckpt)
        assert state["epoch"] == epoch and len(state["domain_order_rng"]) == 2
        assert json.loads((ckpt / "config.json").read_text())["data_root"] == cfg.data_root
    assert select_epoch_source_val(recs).method == "source_val"
    assert select_epoch_oracle(recs).method == "oracle"


def test_resume_from_epoch_checkpoint_reproduces_epoch_2(two_epoch_run):
    cfg, out = two_epoch_run
    full = read_records(out / "full" / RECORDS_FILE)
    result = run_trial(cfg, storage_path=str(out), name="resumed", resume_from=str(out / "full" / "checkpoint_epoch0000"))
    assert result.error is None, result.error
    resumed = read_records(out / "resumed" / RECORDS_FILE)
    assert [r["epoch"] for r in resumed] == [0, 1]  # epoch 0 carried over from the checkpoint, epoch 1 trained
    for key in ("auc", "hter_eer"):
        assert resumed[1]["val"][key] == pytest.approx(full[1]["val"][key], abs=1e-6)
        assert resumed[1]["target_metrics"][key] == pytest.approx(full[1]["target_metrics"][key], abs=1e-6)
    assert resumed[1]["losses"] == pytest.approx(full[1]["losses"], rel=1e-5)
    a = load_checkpoint(out / "full" / "checkpoint_epoch0001")["learner"]
    b = load_checkpoint(out / "resumed" / "checkpoint_epoch0001")["learner"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_gathered_evaluation_is_the_saved_model(two_epoch_run):
    """Under DDP every rank evaluates with the model rank 0 saves (BatchNorm statistics averaged)."""
    from anrl_ray.checkpoint import load_model
    from anrl_ray.metrics import video_level
    from anrl_ray.scoring import Scores, score_split

    cfg, out = two_epoch_run
    ckpt = out / "full" / "checkpoint_epoch0001"
    saved = json.loads((ckpt / "metrics.json").read_text())["video_scores"]
    model, _, state = load_model(ckpt)
    # BatchNorm statistics of the saved model are the ranks' mean (and the drift check covers them)
    assert any("running_mean" in k for k in state["learner"])
    for which, splits in (("val", [(d, "dev") for d in cfg.sources]), ("target", [(cfg.target, "test")])):
        alone = Scores()
        for domain, split in splits:
            score_split(model, cfg, cfg.data_root, domain, split, batch_size=7, into=alone)  # another batching
        s, _, ids = video_level(alone.scores, alone.labels, alone.video_ids)
        mine = dict(zip(ids, s))
        assert set(mine) == set(saved[which])  # every video, exactly the gathered set
        for vid, score in saved[which].items():
            assert score == pytest.approx(mine[vid], abs=1e-5), (which, vid)
