"""Multi-seed re-evaluation (anrl_ray.reeval) on hand-built records; the training step is injected.

The "train one run" step writes records files as trial.py would, with values that depend on
the run's seed, held-out domain and epoch, so each test knows what an honest re-evaluation must
select. A real-Ray re-evaluation runs in tests/test_search.py::test_lodo_search_and_multi_seed_reevaluation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from anrl_ray.config import TrialConfig, make_config
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import append_record, end_record, read_records, write_records
from anrl_ray.reeval import ReevalError, ensure_run, mean_sem, reevaluate, run_finished

EPOCHS = 3


def record(cfg: TrialConfig, name: str, group: str, epoch: int, val_hter: float, target_auc: float,
           target_hter: float = 0.3) -> dict:
    """One epoch record in trial.py's layout (the fields selection and reeval read)."""
    return {
        "kind": "epoch", "trial": name, "group": group, "epoch": epoch, "protocol": cfg.protocol,
        "sources": list(cfg.sources), "target": cfg.target, "holdout": cfg.holdout,
        "val": {"hter_eer": val_hter, "auc": 1 - val_hter, "eer": val_hter},
        "target_metrics": {"auc": target_auc, "hter": target_hter, "hter_eer": target_hter - 0.05, "eer": 0.2,
                           "tpr@fpr=1%": 0.4},
        "thresholds": {"source_val_eer": 0.5, "target_eer": 0.6},
        "config": cfg.to_dict(),
    }


def write_run(folder: Path, recs: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_records(records_path(folder), recs)


class FakeTrainer:
    """Stands in for one Ray Train run: writes EPOCHS records; remembers what it trained.

    Full runs: source validation best at epoch 0 (val HTER 0.1, 0.2, 0.3), target AUC
    0.5 + seed/10000 + epoch/10. Holdout runs: held-out score best at epoch 2 (0.3, 0.2, 0.1).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str]] = []  # (name, seed, holdout, storage folder name)

    def __call__(self, cfg: TrialConfig, storage: Path, name: str, group: str) -> None:
        self.calls.append((name, cfg.seed, cfg.holdout, storage.name))
        vals = (0.3, 0.2, 0.1) if cfg.holdout else (0.1, 0.2, 0.3)
        recs = [record(cfg, name, group, e, vals[e], 0.5 + cfg.seed / 10000 + e / 10, target_hter=0.3 - e / 10)
                for e in range(EPOCHS)]
        write_run(storage / name, recs)


def make_experiment(root: Path, selection: str) -> tuple[Experiment, TrialConfig]:
    """One search trial "t1" (3 epochs, with its three holdout runs for lodo) and search.json."""
    exp = Experiment(root / "exp")
    cfg = make_config({"protocol": "OCI_M", "epochs": EPOCHS, "w_depth": 0.5})
    exp.write_settings({"protocol": "OCI_M", "selection": selection})
    write_run(exp.run_dir("t1"), [record(cfg, "t1", "t1", e, 0.2, 0.7) for e in range(EPOCHS)])
    for d in cfg.sources:
        held = cfg.replace(holdout=d)
        write_run(exp.run_dir(f"t1-holdout{d}"), [record(held, f"t1-holdout{d}", "t1", e, 0.2, 0.7) for e in range(EPOCHS)])
    return exp, cfg


def test_mean_sem():
    assert mean_sem([1.0, 2.0, 3.0]) == pytest.approx((2.0, (1.0 / 3) ** 0.5))
    m, s = mean_sem([4.0])
    assert m == 4.0 and s != s  # one seed: no standard error (nan)


def test_run_finished_needs_all_epochs_and_no_failure():
    cfg = make_config({"epochs": EPOCHS})
    recs = [record(cfg, "r", "r", e, 0.1, 0.9) for e in range(EPOCHS)]
    assert run_finished(recs, EPOCHS)
    assert not run_finished(recs[:2], EPOCHS)
    for kind in ("failed", "diverged", "interrupted"):
        assert not run_finished(recs + [end_record(kind, "r", "x")], EPOCHS)
    assert run_finished(recs + [end_record("end", "r", state="completed")], EPOCHS)


def test_partial_failed_and_interrupted_reeval_runs_are_retrained_not_reused(tmp_path):
    exp, cfg = make_experiment(tmp_path, "source_val")
    seeded = {s: cfg.replace(seed=s) for s in (1000, 1001, 1002)}
    # seed 1000: cut short after 1 of 3 epochs, with a target AUC no honest table may contain
    write_run(exp.reeval / "reeval-t1-seed1000", [record(seeded[1000], "reeval-t1-seed1000", "x", 0, 0.05, 0.01)])
    # seed 1001: finished earlier: reused as it is
    write_run(exp.reeval / "reeval-t1-seed1001",
              [record(seeded[1001], "reeval-t1-seed1001", "x", e, 0.1 * (e + 1), 0.8) for e in range(EPOCHS)])
    # seed 1002: every epoch recorded, but the driver was interrupted: not a finished run
    write_run(exp.reeval / "reeval-t1-seed1002",
              [record(seeded[1002], "reeval-t1-seed1002", "x", e, 0.05, 0.02) for e in range(EPOCHS)])
    append_record(records_path(exp.reeval / "reeval-t1-seed1002"), end_record("interrupted", "reeval-t1-seed1002"))

    train = FakeTrainer()
    reevaluate(exp.path, top_k=1, seeds=3, train_one=train)
    assert [(n, s) for n, s, _, _ in train.calls] == [("reeval-t1-seed1000", 1000), ("reeval-t1-seed1002", 1002)]
    # the partial records are gone, replaced by the new run's
    recs = read_records(records_path(exp.reeval / "reeval-t1-seed1000"))
    assert len(recs) == EPOCHS and all(r["target_metrics"]["auc"] != 0.01 for r in recs)
    row = next(csv.DictReader(open(exp.reeval_table("csv"))))
    # source_val picks epoch 0 everywhere: AUCs 0.5 + 1000/10000, 0.8 (reused), 0.5 + 1002/10000
    expected = mean_sem([0.6, 0.8, 0.6002])
    assert float(row["target_auc_mean"]) == pytest.approx(expected[0])
    assert float(row["target_auc_sem"]) == pytest.approx(expected[1])
    assert row["selection"] == "source_val" and row["epochs"] == "0 0 0"
    # a second call reuses all three (now finished) runs
    again = FakeTrainer()
    reevaluate(exp.path, top_k=1, seeds=3, train_one=again)
    assert again.calls == []


def test_lodo_experiment_selects_reeval_epochs_by_lodo_with_holdout_runs_per_seed(tmp_path):
    exp, cfg = make_experiment(tmp_path, "lodo")
    train = FakeTrainer()
    reevaluate(exp.path, top_k=1, seeds=2, train_one=train)  # selection: search.json's "lodo"
    # per seed: the full run, then one holdout run per source, same seed, under reeval/holdout/
    for seed in (1000, 1001):
        mine = [c for c in train.calls if c[1] == seed]
        assert mine[0] == (f"reeval-t1-seed{seed}", seed, "", "reeval")
        assert sorted(c[2] for c in mine[1:]) == sorted(cfg.sources)
        assert all(c[3] == "holdout" and c[0].startswith(f"reeval-t1-seed{seed}-holdout") for c in mine[1:])
    row = next(csv.DictReader(open(exp.reeval_table("csv"))))
    # the holdout runs' mean score is best at epoch 2 (the full run's own validation would pick epoch 0)
    assert row["selection"] == "lodo" and row["epochs"] == "2 2"
    assert float(row["target_auc_mean"]) == pytest.approx(mean_sem([0.8, 0.8001])[0])
    assert float(row["target_hter@source_val_threshold_mean"]) == pytest.approx(0.1)
    assert "leave-one-source-domain-out" in exp.reeval_table("md").read_text()
    # the same experiment re-evaluated by source_val picks epoch 0 of the same (reused) runs
    again = FakeTrainer()
    reevaluate(exp.path, top_k=1, seeds=2, selection="source_val", train_one=again)
    assert again.calls == []
    assert next(csv.DictReader(open(exp.reeval_table("csv"))))["epochs"] == "0 0"


def test_a_rerun_that_stops_short_raises(tmp_path):
    cfg = make_config({"epochs": EPOCHS, "seed": 1000})

    def short(cfg, storage, name, group):
        write_run(storage / name, [record(cfg, name, group, 0, 0.1, 0.9)])
        append_record(records_path(storage / name), end_record("diverged", name, "non-finite loss"))

    with pytest.raises(ReevalError, match="1 of 3 epochs recorded, state diverged non-finite loss"):
        ensure_run(cfg, tmp_path, "r", "r", short)
    # the next attempt starts from scratch: the diverged folder is removed first
    ensure_run(cfg, tmp_path, "r", "r", FakeTrainer())
    assert len(read_records(records_path(tmp_path / "r"))) == EPOCHS
    assert json.loads((tmp_path / "r" / "records.jsonl").read_text().splitlines()[0])["kind"] == "epoch"
