"""The search end to end: real Ray Tune + Optuna + Ray Train on tiny synthetic data; bad options."""

import csv
import json

import optuna
import pytest

from anrl_ray.cli.run import search_main as main

TINY = ["--set", "img_size=16", "--set", "width=0.125", "--set", "batch_per_class=2", "--set", "max_steps_per_epoch=2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--protocol", "XYZ"], "unknown protocol 'XYZ'"),
        (["--num-samples", "0"], "--num-samples must be >= 1"),
        (["--cpus-per-worker", "-1"], "--cpus-per-worker must be >= 0"),
        (["--protocol", "MI_C", "--selection", "lodo"], "lodo needs >= 3 source domains"),
        (["--space", "nope.yaml"], "search space nope.yaml"),
        (["--set", "w_depht=1"], "unknown config key 'w_depht'"),
        (["--data", "/nonexistent/data"], "--data /nonexistent/data"),
    ],
)
def test_bad_options_exit_2_with_a_message(argv, message, capsys, tmp_path):
    assert main(argv + ["--storage", str(tmp_path), "--wandb", "off"]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_object_store_is_exit_2_not_a_local_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    assert main(["--storage", "s3://bucket/runs", "--wandb", "off"]) == 2
    err = capsys.readouterr().err
    assert "--storage s3://bucket/runs: cannot write there" in err and "127.0.0.1:9" in err
    assert list(tmp_path.iterdir()) == []  # not a local folder named s3:


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--scheduler", "hyperband"])
    assert e.value.code == 2


def test_resume_of_missing_experiment_exits_2(tmp_path, capsys):
    assert main(["--resume", "--name", "nothing", "--storage", str(tmp_path), "--wandb", "off"]) == 2
    assert "search.json missing" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.integration
def test_search_end_to_end_and_resume(tiny_data, tmp_path, capsys):
    argv = ["--protocol", "OCI_M", "--data", tiny_data, "--storage", str(tmp_path), "--name", "exp",
            "--num-samples", "3", "--epochs", "2", "--grace-period", "1", "--wandb", "off", *TINY]
    assert main(argv) == 0
    exp = tmp_path / "exp"
    out = capsys.readouterr().out
    assert "best trial exported to" in out and str(exp / "best") in out
    # leaderboard
    md = (exp / "leaderboard.md").read_text()
    assert "source_val" in md and "oracle" in md.lower()
    assert len((exp / "leaderboard.csv").read_text().strip().splitlines()) == 1 + 3
    # best/ export
    for name in ("model.safetensors", "checkpoint.pt", "config.json", "metrics.json", "selection.json"):
        assert (exp / "best" / name).is_file(), name
    assert json.loads((exp / "best" / "selection.json").read_text())["method"] == "source_val"
    # plots are real PNGs
    pngs = list((exp / "plots").glob("*.png"))
    assert len(pngs) >= 4
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # the Optuna study: 3 finished trials, the first at the reference defaults
    study = optuna.load_study(study_name="anrl", storage=f"sqlite:///{exp / 'optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == 3
    assert trials[0].params["w_depth"] == 0.1 and trials[0].params["meta_step_size"] == 1e-4
    # a resumed search continues the same study
    assert main(argv + ["--resume", "--num-samples", "4"]) == 0
    study = optuna.load_study(study_name="anrl", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 4
    assert len((exp / "leaderboard.csv").read_text().strip().splitlines()) == 1 + 4


@pytest.mark.slow
@pytest.mark.integration
def test_lodo_search_and_multi_seed_reevaluation(tiny_data, tmp_path, capsys):
    """--selection lodo trains one run per held-out source plus the full run; --reeval-top-k re-trains with fresh seeds."""
    argv = ["--protocol", "OCI_M", "--data", tiny_data, "--storage", str(tmp_path), "--name", "lodo",
            "--num-samples", "1", "--epochs", "1", "--scheduler", "none", "--wandb", "off", "--selection", "lodo",
            "--reeval-top-k", "1", "--seeds", "2", *TINY]
    assert main(argv) == 0
    exp = tmp_path / "lodo"
    holdouts = sorted(p.name.rsplit("holdout", 1)[1] for p in (exp / "trials").glob("*-holdout*"))
    assert holdouts == ["C", "I", "O"]
    selection = json.loads((exp / "best" / "selection.json").read_text())
    assert selection["method"] == "lodo"
    assert "lodo" in (exp / "leaderboard.md").read_text()
    rows = list(csv.DictReader(open(exp / "reeval.csv")))
    assert len(rows) == 1 and rows[0]["seeds"] == "2"
    assert float(rows[0]["target_auc_sem"]) >= 0.0  # two seeds: a finite standard error
    assert "±" in (exp / "reeval.md").read_text()
    assert len(list((exp / "reeval").glob("reeval-*/records.jsonl"))) == 2
