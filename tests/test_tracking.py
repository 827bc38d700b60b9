"""W&B offline runs written from the records at the end of a search (no actor, no network)."""

from anrl_ray.tracking import write_offline_runs


def _rec(trial, epoch, auc):
    m = {"auc": auc, "eer": 0.2, "hter_eer": 0.2, "tpr@fpr=1%": 0.1, "hter": 0.25}
    return {"kind": "epoch", "trial": trial, "epoch": epoch, "val": m, "target_metrics": m,
            "losses": {"loss": 1.0 / (epoch + 1)}, "config": {"lr": 1e-3, "selection_metric": "hter"}}


def test_offline_runs_one_per_trial_and_not_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = {"t1": [_rec("t1", 0, 0.6), _rec("t1", 1, 0.7)], "t2": [_rec("t2", 0, 0.5)]}
    ids = write_offline_runs(tmp_path / "wandb", "EXP", runs)
    assert ids == ["EXP-t1", "EXP-t2"]
    offline = sorted(p.name for p in (tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(list((tmp_path / "wandb" / "wandb" / n).glob("*.wandb")) for n in offline)
    assert write_offline_runs(tmp_path / "wandb", "EXP", runs) == []  # a resumed search does not duplicate them
    runs["t2"].append(_rec("t2", 1, 0.55))
    assert write_offline_runs(tmp_path / "wandb", "EXP", runs) == ["EXP-t2"]  # new epochs: written again
