"""``anrl-ray table``: searched vs defaults on hand-built records (injected training), and end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from anrl_ray import table
from anrl_ray.cli import main
from anrl_ray.config import TrialConfig, make_config
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import epoch_records, read_records, write_records
from anrl_ray.reeval import mean_sem
from anrl_ray.selection import select_epoch_source_val

EPOCHS = 2


def record(cfg: TrialConfig, name: str, epoch: int, val_hter: float, auc: float, hter: float) -> dict:
    return {
        "kind": "epoch", "trial": name, "group": name, "epoch": epoch, "protocol": cfg.protocol,
        "sources": list(cfg.sources), "target": cfg.target, "holdout": cfg.holdout,
        "val": {"hter_eer": val_hter, "auc": 1 - val_hter},
        "target_metrics": {"auc": auc, "hter": hter, "hter_eer": hter / 2, "tpr@fpr=1%": 0.5},
        "thresholds": {"source_val_eer": 0.5}, "config": cfg.to_dict(),
    }


def make_experiment(root: Path, searched_wins: bool) -> tuple[Experiment, TrialConfig, TrialConfig]:
    """A finished OCI_M search: trial "t_def" at the space's defaults, trial "t_s" with w_depth=0.9."""
    exp = Experiment(root / "OCI_M")
    base = make_config({"protocol": "OCI_M", "epochs": EPOCHS})
    exp.write_settings({"protocol": "OCI_M", "selection": "source_val", "space": "anrl", "base_config": base.to_dict()})
    defaults = table.defaults_config(exp)
    searched = defaults.replace(w_depth=0.9)
    for name, cfg, val in (("t_def", defaults, 0.2), ("t_s", searched, 0.1 if searched_wins else 0.3)):
        folder = exp.run_dir(name)
        folder.mkdir(parents=True)
        write_records(records_path(folder), [record(cfg, name, e, val, 0.5, 0.5) for e in range(EPOCHS)])
    return exp, defaults, searched


class Trainer:
    """Target AUC: 0.8 + 0.01 * k (searched) or 0.7 + 0.02 * k (defaults), k = seed - 1000, at epoch 0
    (the source-val pick); target HTER 0.2 + 0.03 * (-1)^k either way, minus 0.001 for searched."""

    def __init__(self, searched: TrialConfig) -> None:
        self.searched, self.calls = searched, []

    def __call__(self, cfg: TrialConfig, storage: Path, name: str, group: str) -> None:
        self.calls.append(name)
        k = cfg.seed - 1000
        is_s = cfg.w_depth == self.searched.w_depth
        auc = 0.8 + 0.01 * k if is_s else 0.7 + 0.02 * k
        hter = 0.2 + 0.03 * (-1) ** k - (0.001 if is_s else 0.0)
        recs = [record(cfg, name, 0, 0.1, auc, hter), record(cfg, name, 1, 0.4, 0.99, 0.01)]  # epoch 1 = oracle
        (storage / name).mkdir(parents=True)
        write_records(records_path(storage / name), recs)


def test_searched_vs_defaults_paired_over_the_same_seeds(tmp_path):
    exp, defaults, searched = make_experiment(tmp_path, searched_wins=True)
    train = Trainer(searched)
    res = table.evaluate_protocol(exp, 3, ["source_val"], train)
    assert sorted(train.calls) == sorted([f"reeval-t_s-seed{s}" for s in (1000, 1001, 1002)]
                                         + [f"reeval-defaults-seed{s}" for s in (1000, 1001, 1002)])
    assert res.trials == {"source_val": "t_s"} and res.same == {"source_val": False}
    res.synthetic = True
    paths = table.write_tables(tmp_path, [res], ["source_val"], 3, command="anrl-ray table --seeds 3")
    row = next(csv.DictReader(open(paths["csv"])))
    assert float(row["searched_auc_mean"]) == pytest.approx(0.81)
    assert float(row["defaults_auc_mean"]) == pytest.approx(0.72)
    # paired: per-seed differences 0.1, 0.09, 0.08 -> mean 0.09, SEM 0.01/sqrt(3)
    assert float(row["diff_auc_mean"]) == pytest.approx(0.09)
    assert float(row["diff_auc_sem"]) == pytest.approx(mean_sem([0.1, 0.09, 0.08])[1])
    assert row["diff_auc_gt_2se"] == "yes"
    # HTER: the seed effect cancels in the pairs (difference -0.001 every seed, SEM 0): significant
    assert float(row["diff_hter_srcval_mean"]) == pytest.approx(-0.001) and row["diff_hter_srcval_gt_2se"] == "yes"
    assert float(row["oracle_searched_auc_mean"]) == pytest.approx(0.99)  # oracle: the best-target-AUC epoch
    assert (float(row["paper_hter"]), float(row["paper_auc"])) == (0.1083, 0.9675)
    md = paths["md"].read_text()
    assert md.count("## ") == 3 and all("SYNTHETIC" in line for line in md.splitlines() if line.startswith("#"))
    assert "ANRL paper (target-selected)" in md and "10.83 / 96.75" in md and "UPPER BOUND" in md
    assert "81.00 ± 0.58" in md  # AUC 0.81 ± 0.01/sqrt(3), in %
    tex = paths["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 3 and "SYNTHETIC" in tex and r"$\pm$" in tex
    # a protocol whose re-evaluation failed keeps its row, empty, and says why
    failed = table.ProtocolResult("OMI_C", [1000, 1001, 1002], error="re-evaluation run X diverged", synthetic=True)
    paths = table.write_tables(tmp_path, [res, failed], ["source_val"], 3)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["protocol"] for r in rows] == ["OCI_M", "OMI_C"]
    assert rows[1]["error"] == "re-evaluation run X diverged" and rows[1]["searched_auc_mean"] == ""
    assert "- OMI_C: re-evaluation run X diverged" in paths["md"].read_text()


def test_defaults_trial_selected_trains_once_and_differs_by_zero(tmp_path):
    exp, defaults, searched = make_experiment(tmp_path, searched_wins=False)
    train = Trainer(searched)
    res = table.evaluate_protocol(exp, 2, ["source_val"], train)
    assert res.trials["source_val"] == "t_def" and res.same["source_val"]
    assert train.calls == ["reeval-t_def-seed1000", "reeval-t_def-seed1001"]  # one run per seed serves both arms
    row = table.csv_rows([res], ["source_val"])[0]
    assert row["diff_auc_mean"] == 0 and row["diff_auc_gt_2se"] == "no" and row["searched_is_defaults"] == "yes"


def test_paired_difference_needs_two_seeds():
    assert table.paired_difference([0.5], [0.4])[2] == "n/a"
    assert table.paired_difference([0.5, 0.6], [0.1, 0.7])[2] == "no"


@pytest.mark.parametrize("argv, message", [
    (["--protocols", "OCI_M,XYZ"], "unknown protocol 'XYZ'"),
    (["--protocols", "MI_C", "--selection", "lodo"], "lodo needs >= 3 source domains"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--protocols", "OCI_M,OCI_M"], "listed twice"),
])
def test_bad_options_exit_2(argv, message, tmp_path, capsys):
    assert main(["table", "--storage", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.integration
def test_table_end_to_end(tiny_data, tmp_path, capsys):
    """Two protocols, one trial each (the defaults), two seeds: real Ray Train, Tune and Optuna."""
    import ray

    argv = ["table", "--protocols", "OCI_M,MI_C", "--data", tiny_data, "--storage", str(tmp_path), "--name", "t",
            "--num-samples", "1", "--epochs", "1", "--seeds", "2", "--profile", "cpu", "--workers-per-trial", "1",
            "--scheduler", "none",  # one epoch: no early stopping to do
            "--set", "max_steps_per_epoch=2", "--set", "img_size=16", "--set", "width=0.125", "--set", "batch_per_class=2"]
    try:
        assert main(argv) == 0
        root = tmp_path / "t"
        for suffix in ("md", "csv", "tex"):
            assert (root / f"table.{suffix}").is_file()
        rows = list(csv.DictReader(open(root / "table.csv")))
        assert [r["protocol"] for r in rows] == ["OCI_M", "MI_C"]
        for r in rows:
            assert "SYNTHETIC" in r["data"] and r["searched_is_defaults"] == "yes" and r["error"] == ""
            reeval = root / r["protocol"] / "reeval"
            runs = [epoch_records(read_records(records_path(reeval / f"reeval-{r['searched_trial']}-seed{s}")))
                    for s in (1000, 1001)]
            sels = [select_epoch_source_val(run).summary() for run in runs]
            for key, short in (("target_auc", "auc"), ("target_hter@source_val_threshold", "hter_srcval"),
                               ("target_hter@target_eer", "hter_eer")):
                m, s = mean_sem([x[key] for x in sels])
                assert float(r[f"searched_{short}_mean"]) == pytest.approx(m)
                assert float(r[f"searched_{short}_sem"]) == pytest.approx(s)
                assert float(r[f"defaults_{short}_mean"]) == pytest.approx(m)
        assert rows[0]["paper_auc"] == "0.9675" and rows[1]["paper_auc"] == ""
        md = (root / "table.md").read_text()
        assert all("SYNTHETIC" in line for line in md.splitlines() if line.startswith("#"))
        assert "| OCI_M |" in md and "| MI_C |" in md and "ANRL paper (target-selected)" in md
        # running it again continues the folder: every search and re-run is reused, nothing trains
        capsys.readouterr()
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.count("reused") == 2 and "training it again" not in out
        assert len(list(root.glob("*/reeval/reeval-*/records.jsonl"))) == 4
    finally:
        ray.shutdown()
