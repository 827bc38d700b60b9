"""Experiment storage in an object store: a real S3-compatible server (moto's, on 127.0.0.1, started
and stopped by the ``s3`` fixture). The storage layer itself; a URI that cannot be reached is exit 2
before anything runs; a search whose experiment lives only in S3, then ``best``, ``evaluate``,
``predict`` and ``--resume`` from the URI."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from anrl_ray import storage
from anrl_ray.cli import main as cli_main
from anrl_ray.cli.run import search_main
from anrl_ray.errors import UserError
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import append_record, read_records, write_records

TINY = ["--profile", "cpu", "--epochs", "1", "--workers-per-trial", "1", "--scheduler", "none", "--wandb", "off",
        "--set", "max_steps_per_epoch=2"]


def test_storage_layer_on_s3(s3, tmp_path):
    base = f"{s3}/layer"
    storage.check_reachable(base)
    assert not storage.exists(f"{base}/a.txt") and storage.list_names(base) == []
    storage.write_text(f"{base}/a.txt", "one\n")
    storage.append_text(f"{base}/a.txt", "two\n")
    assert storage.read_text(f"{base}/a.txt") == "one\ntwo\n" and storage.is_file(f"{base}/a.txt")
    # records: append (an object store has none: the object is rewritten), read, rewrite
    path = records_path(f"{base}/run")
    assert path == f"{base}/run/records.jsonl"  # a URI is never folded by pathlib
    append_record(path, {"epoch": 0, "x": float("nan")})
    append_record(path, {"epoch": 1})
    assert read_records(path) == [{"epoch": 0, "x": None}, {"epoch": 1}]
    write_records(path, [{"epoch": 5}])
    assert read_records(path) == [{"epoch": 5}]
    # folders both ways
    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f.bin").write_bytes(b"\x00\x01")
    (local / "top.txt").write_text("t")
    (local / "skip").mkdir()
    (local / "skip" / "no.txt").write_text("n")
    storage.upload(local, f"{base}/up", exclude=("skip",))
    assert storage.list_names(f"{base}/up") == ["sub", "top.txt"]
    down = storage.download(f"{base}/up", tmp_path / "down")
    assert (down / "sub" / "f.bin").read_bytes() == b"\x00\x01" and (down / "top.txt").read_text() == "t"
    # the driver's scratch folder of a URI: stable, under ANRL_RAY_SCRATCH, distinct per URI
    assert storage.scratch_dir(f"{s3}/x") == storage.scratch_dir(f"{s3}/x") != storage.scratch_dir(f"{s3}/y")
    assert str(storage.scratch_dir(f"{s3}/x")).startswith(os.environ["ANRL_RAY_SCRATCH"])


def test_unreachable_storage_is_exit_2_before_anything_runs(s3, tiny_data, tmp_path, capsys, monkeypatch):
    t0 = time.time()
    argv = ["--data", tiny_data, "--storage", "s3://no-such-bucket/runs", "--name", "X", "--num-samples", "1", *TINY]
    assert search_main(argv) == 2
    err = capsys.readouterr().err
    assert "--storage s3://no-such-bucket/runs: cannot write there" in err and err.count("\n") == 1
    assert "anrl-test-secret" not in err  # credentials never printed
    with pytest.raises(UserError, match="not an experiment"):
        Experiment(f"{s3}/nothing-here").require()
    # a server that is not there
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert search_main([*argv[:2], "--storage", f"{s3}/runs", *argv[4:]]) == 2
    assert "cannot write there" in capsys.readouterr().err
    # --storage-endpoint wins over the environment
    assert search_main([*argv[:2], "--storage", "s3://no-such-bucket/runs", "--storage-endpoint", "localhost:9", *argv[4:]]) == 2
    assert "--storage-endpoint localhost:9: give a URL" in capsys.readouterr().err
    assert time.time() - t0 < 120
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)


def _local_files(root: Path, scratch: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and scratch not in p.parents]


@pytest.mark.slow
def test_search_on_s3_then_best_evaluate_predict_and_resume(s3, tiny_data, tmp_path, capsys, monkeypatch):
    import cv2
    import optuna

    uri = f"{s3}/runs"
    scratch = Path(os.environ["ANRL_RAY_SCRATCH"])
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder either
    argv = ["--data", tiny_data, "--storage", uri, "--name", "S3", "--num-samples", "1", *TINY]
    assert search_main(argv) == 0
    exp_uri = f"{uri}/S3"
    names = storage.list_names(exp_uri)
    for expected in ("search.json", "trials", "tune", "leaderboard.md", "leaderboard.csv", "best", "logs",
                     "optuna.db", "study_trials.csv"):
        assert expected in names, names
    (run,) = storage.list_names(f"{exp_uri}/trials")
    recs = read_records(records_path(f"{exp_uri}/trials/{run}"))
    assert [r.get("kind", "epoch") for r in recs] == ["epoch", "end"]
    assert storage.is_file(f"{exp_uri}/trials/{run}/{recs[0]['checkpoint']}/checkpoint.pt")  # Ray Train persisted it there
    assert json.loads(storage.read_text(f"{exp_uri}/best/selection.json"))["trial"] == run
    assert "COMPLETE" in storage.read_text(f"{exp_uri}/study_trials.csv")
    assert json.loads(storage.read_text(f"{exp_uri}/search.json"))["num_samples"] == 1
    # on local disk: only the driver's scratch (and nothing in the working folder)
    assert _local_files(tmp_path, scratch) == []
    assert not Path("runs").exists()

    # anrl-ray best / evaluate / predict from the URI
    capsys.readouterr()
    assert cli_main(["best", exp_uri, "--no-plots"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"best: {exp_uri}/best")
    assert cli_main(["evaluate", f"{exp_uri}/best", "--data", tiny_data, "--domain", "M"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["video_level"]["auc"] <= 1.0
    img = tmp_path / "crop.png"
    cv2.imwrite(str(img), (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    assert cli_main(["predict", f"{exp_uri}/best", str(img), "--no-detect"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(img)) and line.split("\t")[-1] in ("live", "spoof")
    assert cli_main(["evaluate", f"{exp_uri}/nope", "--data", tiny_data, "--domain", "M"]) == 2

    # --resume from the URI: one more trial, the study goes on (kept beside the driver)
    assert search_main([*argv[: argv.index("--num-samples")], "--num-samples", "2", *TINY, "--resume"]) == 0
    study = optuna.load_study(study_name="anrl", storage=f"sqlite:///{Experiment(exp_uri).study_db}")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    assert len(storage.list_names(f"{exp_uri}/trials")) == 2
    settings = json.loads(storage.read_text(f"{exp_uri}/search.json"))
    assert settings["num_samples"] == 2 and len(settings["history"]) == 1
    assert storage.read_text(f"{exp_uri}/study_trials.csv").count("COMPLETE") == 2
