import pytest

from anrl_ray.records import append_record, collect_records, read_records
from anrl_ray.selection import (
    lodo_scores,
    select,
    select_epoch_oracle,
    select_epoch_source_val,
    select_lodo,
    select_oracle,
    select_source_val,
)


def rec(trial, epoch, val_hter, target_auc, target_hter=0.3, holdout="", group=None, metric="hter", val_auc=0.9,
        sources=("O", "C", "I")):
    srcs = [s for s in sources if s != holdout]
    return {
        "trial": trial,
        "group": group or trial,
        "epoch": epoch,
        "holdout": holdout,
        "sources": srcs,
        "config": {"selection_metric": metric},
        "val": {"hter_eer": val_hter, "auc": val_auc},
        "target_metrics": {"auc": target_auc, "hter": target_hter, "hter_eer": target_hter / 2, "tpr@fpr=1%": 0.5},
        "thresholds": {"source_val_eer": 0.4, "target_eer": 0.6},
    }


RUNS = {
    "a": [rec("a", 0, 0.30, 0.70), rec("a", 1, 0.10, 0.75), rec("a", 2, 0.20, 0.95)],
    "b": [rec("b", 0, 0.15, 0.99), rec("b", 1, 0.12, 0.60)],
}


def test_source_val_never_looks_at_the_target():
    s = select_source_val(RUNS)
    assert (s.method, s.trial, s.epoch) == ("source_val", "a", 1)
    # changing target numbers does not change the source_val choice
    changed = {k: [dict(r, target_metrics={**r["target_metrics"], "auc": 0.01}) for r in v] for k, v in RUNS.items()}
    assert (select_source_val(changed).trial, select_source_val(changed).epoch) == ("a", 1)


def test_oracle_picks_best_target_auc():
    s = select_oracle(RUNS)
    assert (s.method, s.trial, s.epoch) == ("oracle", "b", 0)
    assert select_epoch_oracle(RUNS["a"]).epoch == 2
    assert s.summary()["selection"] == "oracle"


def test_auc_metric_and_ties():
    run = [rec("x", 0, 0.1, 0.5, metric="auc", val_auc=0.8), rec("x", 1, 0.1, 0.5, metric="auc", val_auc=0.9),
           rec("x", 2, 0.1, 0.5, metric="auc", val_auc=0.9)]
    assert select_epoch_source_val(run).epoch == 1  # best AUC; tie -> earlier epoch


def test_lodo_uses_holdout_runs_and_reports_the_full_run():
    runs = {"g1": [rec("g1", e, 0.5, 0.1 * e, target_hter=0.1 * e) for e in range(3)]}
    for h, scores in {"O": [0.4, 0.2, 0.3], "C": [0.4, 0.2, 0.5], "I": [0.4, 0.3, 0.1]}.items():
        runs[f"g1-holdout{h}"] = [rec(f"g1-holdout{h}", e, s, 0.5, holdout=h, group="g1") for e, s in enumerate(scores)]
    runs["g2"] = [rec("g2", e, 0.01, 0.9) for e in range(3)]  # no holdout runs: not a lodo candidate
    scores = lodo_scores(runs)
    assert set(scores) == {"g1"}
    assert scores["g1"][1] == pytest.approx((0.2 + 0.2 + 0.3) / 3)
    s = select_lodo(runs)
    assert (s.method, s.trial, s.epoch) == ("lodo", "g1", 1)
    assert s.record["target_metrics"]["hter"] == pytest.approx(0.1)  # from the full run
    # an incomplete group (a source never held out) is not scored
    del runs["g1-holdoutI"]
    with pytest.raises(ValueError, match="lodo selection needs"):
        select_lodo(runs)


def test_dispatch_and_errors():
    assert select(RUNS, "source_val").trial == "a"
    with pytest.raises(ValueError, match="unknown selection"):
        select(RUNS, "test_domain")
    with pytest.raises(ValueError):
        select_source_val({})


def test_records_roundtrip_and_torn_line(tmp_path):
    path = tmp_path / "t1" / "records.jsonl"
    path.parent.mkdir()
    for r in RUNS["a"]:
        append_record(path, {**r, "nan": float("nan")})
    with open(path, "a") as f:
        f.write('{"trial": "a", "epo')  # crash mid-write
    recs = read_records(path)
    assert len(recs) == 3 and recs[1]["val"]["hter_eer"] == 0.10 and recs[0]["nan"] is None
    runs = collect_records(tmp_path)
    assert list(runs) == ["a"] and select_source_val(runs).epoch == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_records(bad)


def test_source_val_ties_are_broken_by_val_auc_not_by_name():
    runs = {
        "a": [rec("a", 0, 0.125, 0.99, val_auc=0.90)],
        "b": [rec("b", 0, 0.125, 0.10, val_auc=0.95), rec("b", 1, 0.125, 0.10, val_auc=0.97)],
    }
    s = select_source_val(runs)
    assert (s.trial, s.epoch) == ("b", 1)
