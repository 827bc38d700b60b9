"""Leaderboard, Markdown/CSV and figures of anrl_ray.report, on hand-made records."""

from __future__ import annotations

import csv
import json
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from anrl_ray import plots, report
from anrl_ray.config import TrialConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_record(trial, epoch, val_hter, target_auc, *, target_hter=0.3, target_hter_eer=0.25, holdout="",
                group=None, protocol="OCI_M", data_root="", **cfg_changes):
    """One per-epoch record in trial.py's layout (only the fields selection/report read, plus a few)."""
    cfg = TrialConfig(protocol=protocol, data_root=data_root, holdout=holdout, **cfg_changes)
    return {
        "kind": "epoch",
        "trial": trial,
        "group": group or trial,
        "epoch": epoch,
        "protocol": protocol,
        "sources": list(cfg.sources),
        "target": cfg.target,
        "holdout": holdout,
        "val": {"hter_eer": val_hter, "auc": 1 - val_hter, "eer": val_hter, "eer_threshold": 0.5,
                "tpr@fpr=1%": 0.5, "videos": 8, "frames": 16},
        "target_metrics": {"auc": target_auc, "hter": target_hter, "hter_eer": target_hter_eer, "eer": 0.2,
                           "tpr@fpr=1%": 0.4, "eer_threshold": 0.6, "threshold": 0.5 + epoch / 100},
        "thresholds": {"source_val_eer": 0.5 + epoch / 100, "target_eer": 0.6},
        "losses": {"total": 1.0},
        "config": cfg.to_dict(),
    }


def make_runs():
    # a: best val at epoch 1 (0.10); b: best val at epoch 2 (0.05) -> b first under source_val
    a = [make_record("a", e, v, auc, lr=1e-3) for e, (v, auc) in enumerate([(0.3, 0.7), (0.1, 0.8), (0.2, 0.95)])]
    b = [make_record("b", e, v, auc, w_depth=0.5) for e, (v, auc) in enumerate([(0.4, 0.9), (0.2, 0.6), (0.05, 0.7)])]
    held = [make_record("a-holdoutO", e, 0.01, 0.99, holdout="O", group="a") for e in range(3)]
    return {"a": a, "b": b, "a-holdoutO": held}


def test_leaderboard_source_val_order_columns_and_oracle():
    rows = report.leaderboard(make_runs(), "source_val")
    assert [r["trial"] for r in rows] == ["b", "a"]  # holdout run left out, sorted by selection score
    assert all(list(r) == list(report.COLUMNS) for r in rows)
    b, a = rows
    assert (b["rank"], b["epoch"], b["selection_score"]) == (1, 2, 0.05)
    assert (a["epoch"], a["selection_score"]) == (1, 0.1)
    assert a["target_auc"] == 0.8 and a["threshold"] == pytest.approx(0.51)
    assert a["target_hter@source_val_threshold"] == 0.3 and a["target_hter@target_eer"] == 0.25
    # oracle column group: each trial's best-target-AUC epoch, independent of the selection
    assert (a["oracle_epoch"], a["oracle_target_auc"]) == (2, 0.95)
    assert (b["oracle_epoch"], b["oracle_target_auc"]) == (0, 0.9)
    assert a["lr"] == 1e-3 and b["w_depth"] == 0.5 and a["meta_mode"] == "maml" and a["epochs_recorded"] == 3


def test_leaderboard_oracle_and_lodo():
    rows = report.leaderboard(make_runs(), "oracle")
    assert [r["trial"] for r in rows] == ["a", "b"]  # a reaches target AUC 0.95
    assert rows[0]["epoch"] == 2 and rows[0]["selection_score"] == -0.95

    runs = make_runs()
    for d in ("C", "I"):  # complete the holdout set of configuration "a"
        runs[f"a-holdout{d}"] = [make_record(f"a-holdout{d}", e, 0.3 - 0.1 * e, 0.5, holdout=d, group="a") for e in range(3)]
    rows = report.leaderboard(runs, "lodo")
    assert [r["trial"] for r in rows] == ["a", "b"]
    assert rows[0]["epoch"] == 2 and rows[0]["selection_score"] == pytest.approx((0.01 + 0.1 + 0.1) / 3)
    assert rows[1]["epoch"] is None and rows[1]["selection_score"] is None  # no holdout runs: listed last, empty
    assert rows[1]["oracle_epoch"] == 0

    with pytest.raises(ValueError, match="unknown selection method"):
        report.leaderboard(runs, "best_test")


def _data_root(tmp_path, converter):
    root = tmp_path / f"data-{converter}"
    for d in "OCIM":
        (root / d).mkdir(parents=True)
        (root / d / "manifest.json").write_text(json.dumps({"converter": converter, "schema_version": 1}))
    return root


@pytest.mark.parametrize("converter", ["synthetic", "oulu"])
def test_write_leaderboard_md_and_csv(tmp_path, converter):
    exp = tmp_path / "exp"
    exp.mkdir()
    root = _data_root(tmp_path, converter)
    (exp / "search.json").write_text(json.dumps({"protocol": "OCI_M", "data_root": str(root), "selection": "source_val"}))
    rows = report.leaderboard(make_runs(), "source_val")
    md, csv_path = report.write_leaderboard(exp, rows, "source_val")
    assert (md, csv_path) == (exp / "leaderboard.md", exp / "leaderboard.csv")
    text = md.read_text()
    head = text.split("|")[0]  # everything before the table
    assert text.startswith("# Leaderboard: OCI_M") and "Selection method: **source_val**" in head
    assert ("NOT comparable" in head) == (converter == "synthetic")
    assert "UPPER BOUND" in text and "5.00" in text  # b's val HTER 0.05 shown in %
    with open(csv_path) as f:
        got = list(csv.DictReader(f))
    assert [r["trial"] for r in got] == ["b", "a"] and list(got[0]) == list(report.COLUMNS)
    assert float(got[0]["selection_score"]) == 0.05 and got[0]["oracle_epoch"] == "0"


def test_write_leaderboard_reads_protocol_from_records_without_search_json(tmp_path):
    from anrl_ray.records import write_records

    exp = tmp_path / "exp"
    (exp / "trials" / "a").mkdir(parents=True)
    runs = {"a": [make_record("a", 0, 0.2, 0.8, protocol="MI_C")]}
    write_records(exp / "trials" / "a" / "records.jsonl", runs["a"])
    md, _ = report.write_leaderboard(exp, report.leaderboard(runs, "oracle"), "oracle")
    text = md.read_text()
    assert text.startswith("# Leaderboard: MI_C") and "upper bound" in text and "NOT comparable" not in text


def _is_png(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def test_plot_roc_and_tsne(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, size=40), 0, 1)
    _is_png(plots.plot_roc(scores, labels, tmp_path / "roc.png", "ROC", threshold=0.5))
    _is_png(plots.plot_roc(scores, labels, tmp_path / "roc_nothr.png", "ROC"))

    feats = rng.normal(size=(60, 8)) + np.repeat(np.eye(8)[:3] * 4, 20, axis=0)
    domains = ["O"] * 20 + ["C"] * 20 + ["M (target)"] * 20
    _is_png(plots.plot_tsne(feats, domains, labels.tolist() + [0, 1] * 10, tmp_path / "tsne.png"))
    _is_png(plots.plot_tsne(feats[:3], domains[:3], [0, 1, 0], tmp_path / "tsne_small.png"))  # says why, no crash
    with pytest.raises(ValueError, match="differ in length"):
        plots.plot_tsne(feats, domains[:5], labels, tmp_path / "bad.png")


def test_plot_optuna_graceful_and_real(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    # missing study -> PNGs saying why, a warning, no exception
    with pytest.warns(UserWarning, match="cannot load Optuna study"):
        paths = plots.plot_optuna(url, "nope", tmp_path / "missing")
    assert [p.name for p in paths] == list(plots.OPTUNA_FIGURES)
    for p in paths:
        _is_png(p)

    study = optuna.create_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=1)
    with pytest.warns(UserWarning, match="1 completed trial"):
        paths = plots.plot_optuna(url, "s", tmp_path / "one")
    for p in paths:
        _is_png(p)

    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True) + t.suggest_float("w", 0, 1), n_trials=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = plots.plot_optuna(url, "s", tmp_path / "real")
    # both real figures drawn: none of report's "why" warnings (Optuna's own may appear)
    assert not [w for w in caught if str(w.message).startswith("optuna_")], [str(w.message) for w in caught]
    for p in paths:
        _is_png(p)


def test_write_report_uses_search_json_study(tmp_path):
    import optuna
    from anrl_ray.records import write_records

    exp = tmp_path / "exp"
    for name, run in make_runs().items():
        (exp / "trials" / name).mkdir(parents=True)
        write_records(exp / "trials" / name / "records.jsonl", run)
    url = f"sqlite:///{exp / 'optuna.db'}"
    optuna.create_study(study_name="anrl", storage=url)
    (exp / "search.json").write_text(json.dumps({"protocol": "OCI_M", "study_name": "anrl", "optuna_storage": url}))
    with pytest.warns(UserWarning, match="0 completed"):
        out = report.finish(exp, "source_val", export=False)
    assert out.leaderboard_md.is_file() and out.leaderboard_csv.is_file()
    assert [p.name for p in out.plots] == list(plots.OPTUNA_FIGURES) and all(p.is_file() for p in out.plots)


def test_failed_run_with_a_multiline_reason_is_one_leaderboard_row(tmp_path):
    """A failed run's reason (a Ray error spans lines) is folded into one line of the CSV and the table."""
    states = {"c": {"state": "failed", "reason": "ActorDiedError: died\n\tclass_name: TrainController\n\tpid: 1",
                    "epochs": 2}}
    rows = report.leaderboard(make_runs(), "source_val", states=states)
    assert rows[-1]["trial"] == "c" and rows[-1]["status"] == "failed: ActorDiedError: died class_name: TrainController pid: 1"
    report.write_leaderboard(tmp_path, rows, "source_val")
    assert len((tmp_path / "leaderboard.csv").read_text().strip().splitlines()) == 1 + len(rows)
