"""best/ export, model loading, and the anrl-ray best / evaluate / predict commands (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from anrl_ray import checkpoint, export
from anrl_ray.cli import main
from anrl_ray.config import make_config
from anrl_ray.errors import UserError
from anrl_ray.records import write_records
from anrl_ray.checkpoint import save_checkpoint
from anrl_ray.experiment import checkpoint_dir_name
from anrl_ray.factory import build_learner

from test_report import PNG_MAGIC, make_record

TINY = {"img_size": 16, "width": 0.125, "epochs": 3}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The smallest synthetic benchmark: 3 subjects (train/dev/test), 1 video per kind, 2 frames, 16 px."""
    from anrl_ray.data.synthetic import generate

    root = tmp_path_factory.mktemp("export_data") / "data"
    generate(root, seed=0, subjects=3, videos_per_subject=1, frames_per_video=2, img_size=16)
    return root


def _learner(cfg, epoch):
    """A learner whose weights depend on the epoch (so checkpoints of different epochs differ)."""
    learner = build_learner(cfg)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(100 + epoch)
        for p in learner.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return learner


def _save(folder: Path, cfg, epoch, record=None):
    learner = _learner(cfg, epoch)
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr)
    save_checkpoint(folder / "checkpoint.pt", learner, opt, None, epoch, [torch.Generator().get_state()], cfg)
    cfg.save(folder / "config.json")
    if record is not None:
        (folder / "metrics.json").write_text(json.dumps({"record": record}))
    return learner


def _probe(cfg, n=4):
    return torch.randn(n, cfg.in_channels, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(7))


@pytest.fixture()
def experiment(tmp_path, data_root):
    """EXP with two trials: t1 best by source validation at epoch 1; t2 best by target AUC (oracle) at epoch 2,
    whose checkpoint was not kept; plus the learners that wrote the checkpoints."""
    exp = tmp_path / "exp"
    cfg = make_config({**TINY, "data_root": str(data_root), "protocol": "OCI_M"})
    learners = {}
    runs = {
        "t1": [make_record("t1", e, v, auc, data_root=str(data_root), **TINY) for e, (v, auc) in enumerate([(0.3, 0.7), (0.1, 0.8), (0.2, 0.75)])],
        "t2": [make_record("t2", e, v, auc, data_root=str(data_root), **TINY) for e, (v, auc) in enumerate([(0.4, 0.6), (0.35, 0.7), (0.3, 0.99)])],
    }
    for name, run in runs.items():
        tdir = exp / "trials" / name
        tdir.mkdir(parents=True)
        write_records(tdir / "records.jsonl", run)
        for rec in run:
            if name == "t2" and rec["epoch"] == 2:
                continue  # retention dropped it
            learners[(name, rec["epoch"])] = _save(tdir / checkpoint_dir_name(rec["epoch"]), cfg, rec["epoch"], rec)
    (exp / "search.json").write_text(json.dumps({"protocol": "OCI_M", "data_root": str(data_root), "selection": "source_val"}))
    return exp, cfg, learners


def test_load_model_file_and_folder(tmp_path):
    cfg = make_config(TINY)
    learner = _save(tmp_path / "ck", cfg, 0)
    x = _probe(cfg)
    want = learner.model.eval()(x)
    for path in (tmp_path / "ck", tmp_path / "ck" / "checkpoint.pt"):
        model, got_cfg, state = export.load_model(path)
        assert not model.training and got_cfg == cfg and state["epoch"] == 0
        out = model(x)
        assert torch.equal(out.logits, want.logits) and torch.equal(out.feature, want.feature)
    with pytest.raises(UserError, match="not found"):
        export.load_model(tmp_path / "nope")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an anrl-ray checkpoint"):
        export.load_model(tmp_path / "other.pt")


def test_export_best_writes_everything_and_loads_back(experiment):
    from safetensors.torch import load_file

    from anrl_ray.model import build_model

    exp, cfg, learners = experiment
    best = export.export_best(exp, "source_val")
    assert best == exp / "best"
    names = {"model.safetensors", "model_config.json", "checkpoint.pt", "config.json", "metrics.json", "selection.json"}
    assert names <= {p.name for p in best.iterdir()}
    sel = json.loads((best / "selection.json").read_text())
    assert (sel["method"], sel["trial"], sel["epoch"], sel["score"]) == ("source_val", "t1", 1, 0.1)
    assert sel["trials_compared"] == 2 and sel["epochs_compared"] == 6 and "no target data" in sel["how"]
    m = json.loads((best / "metrics.json").read_text())
    assert m["threshold"] == pytest.approx(0.51) and m["summary"]["epoch"] == 1 and m["record"]["trial"] == "t1"
    assert m["oracle"]["epoch"] == 1 and "UPPER BOUND" in m["oracle"]["note"]
    assert make_config(json.loads((best / "config.json").read_text())) == cfg
    src = exp / "trials" / "t1" / checkpoint_dir_name(1) / "checkpoint.pt"
    assert (best / "checkpoint.pt").read_bytes() == src.read_bytes()

    # identical outputs: the original learner, load_model(best/), and the safetensors weights alone
    x = _probe(cfg)
    want = learners[("t1", 1)].model.eval()(x)
    model, _, _ = export.load_model(best)
    mc = json.loads((best / "model_config.json").read_text())
    light = build_model(**mc["build_kwargs"])
    light.load_state_dict(load_file(best / "model.safetensors"))
    assert mc["threshold"] == pytest.approx(0.51) and mc["input"]["img_size"] == 16
    for out in (model(x), light.eval()(x)):
        assert torch.equal(out.logits, want.logits) and torch.equal(out.depth, want.depth)
    other = learners[("t1", 0)].model.eval()(x)
    assert not torch.equal(other.logits, want.logits)  # the epoch mattered

    for png in ("roc_target.png", "tsne_features.png"):
        assert (exp / "plots" / png).read_bytes()[:8] == PNG_MAGIC

    # re-export replaces best/ in place, no temp folders left behind
    (best / "stale.txt").write_text("old")
    export.export_best(exp, "source_val", plots=False)
    assert not (best / "stale.txt").exists()
    assert sorted(p.name for p in exp.iterdir() if p.name.startswith(".")) == []


def test_export_best_missing_checkpoint_and_no_records(experiment, tmp_path):
    exp, _, _ = experiment
    with pytest.raises(UserError, match=r"selected checkpoint is gone.*epochs: 0, 1"):
        export.export_best(exp, "oracle", plots=False)  # oracle picks t2 epoch 2, not kept
    assert not (exp / "best").exists()
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    with pytest.raises(UserError, match="no records.jsonl"):
        export.export_best(tmp_path / "empty")
    with pytest.raises(UserError, match="not an experiment folder"):
        export.export_best(tmp_path)


def test_cli_best(experiment, capsys):
    exp, _, _ = experiment
    assert main(["best", str(exp), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"best: {exp / 'best'}")
    summary = json.loads(out[: out.index("\n}\n") + 2])
    assert (summary["selection"], summary["trial"], summary["epoch"]) == ("source_val", "t1", 1)
    assert (exp / "leaderboard.md").is_file() and (exp / "leaderboard.csv").is_file()

    # oracle: allowed, with a warning; here its checkpoint is gone -> exit 2 naming it
    assert main(["best", str(exp), "--selection", "oracle", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "upper bound" in err and "checkpoint is gone" in err and "t2" in err
    assert main(["best", str(exp / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_evaluate(experiment, data_root, capsys):
    import pyarrow.parquet as pq

    exp, _, _ = experiment
    export.export_best(exp, plots=False)
    assert main(["evaluate", str(exp / "best"), "--data", str(data_root), "--domain", "M"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = pq.read_table(data_root / "M" / "part-00000.parquet", columns=["split", "video_id"]).to_pylist()
    test_rows = [r for r in rows if r["split"] == "test"]
    assert res["frames"] == len(test_rows) and res["videos"] == len({r["video_id"] for r in test_rows})
    assert res["threshold"] == pytest.approx(0.51) and "best" in res["threshold_source"]
    for level in ("video_level", "frame_level"):
        assert {"auc", "eer", "hter_eer", "hter", "apcer", "bpcer", "acc"} <= set(res[level])
        assert res[level]["threshold"] == pytest.approx(0.51)

    # a trial's checkpoint folder: threshold from its metrics.json record; --threshold overrides
    ck = exp / "trials" / "t1" / checkpoint_dir_name(0)
    assert main(["evaluate", str(ck), "--data", str(data_root), "--domain", "O", "--split", "dev"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == pytest.approx(0.50)
    assert main(["evaluate", str(ck / "checkpoint.pt"), "--data", str(data_root), "--domain", "O",
                 "--split", "all", "--threshold", "0.3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["threshold"] == 0.3 and res["frames"] == len(list(pq.read_table(data_root / "O" / "part-00000.parquet",
                                                                                  columns=["split"]).to_pylist()))

    assert main(["evaluate", str(exp / "best"), "--data", str(data_root), "--domain", "X"]) == 2
    err = capsys.readouterr().err
    assert "--domain X" in err and "found: C, I, M, O" in err
    assert main(["evaluate", str(exp / "nothing"), "--data", str(data_root), "--domain", "M"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert main(["evaluate", str(exp / "best"), "--data", str(exp / "nodata"), "--domain", "M"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_predict(experiment, data_root, tmp_path, capsys):
    import pyarrow.parquet as pq

    exp, cfg, learners = experiment
    export.export_best(exp, plots=False)
    rows = pq.read_table(data_root / "M" / "part-00000.parquet", columns=["image", "label"]).to_pylist()[:3]
    files = []
    for i, r in enumerate(rows):
        files.append(tmp_path / f"face{i}.jpg")
        files[-1].write_bytes(r["image"])
    assert main(["predict", "--no-detect", str(exp / "best"), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    scores = []
    for line, f in zip(lines, files):
        path, score, decision = line.split("\t")
        assert path == str(f) and 0.0 <= float(score) <= 1.0
        assert decision == ("spoof" if float(score) >= 0.51 else "live")
        scores.append(float(score))
    # same numbers as scoring the crops directly with the selected learner
    from anrl_ray.data.transforms import FASTransform

    x, _ = FASTransform(16, 6).batch([r["image"] for r in rows], [None] * 3, [0] * 3)
    with torch.no_grad():
        want = torch.softmax(learners[("t1", 1)].model.eval()(torch.from_numpy(x)).logits, 1)[:, 1].numpy()
    # exact on the CPU; on a GPU (the default device there) cuDNN/TF32 convolutions differ slightly
    np.testing.assert_allclose(scores, want, atol=5e-3 if torch.cuda.is_available() else 1e-6)
    assert main(["predict", "--no-detect", str(exp / "best"), *map(str, files), "--device", "cpu"]) == 0
    cpu_scores = [float(line.split("\t")[1]) for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(cpu_scores, want, atol=1e-6)

    assert main(["predict", "--no-detect", str(exp / "best"), str(files[0]), "--threshold", "0"]) == 0
    assert capsys.readouterr().out.strip().endswith("\tspoof")

    assert main(["predict", "--no-detect", str(exp / "best"), str(files[0]), "--threshold", "nan"]) == 2
    assert "--threshold nan: must be a finite number" in capsys.readouterr().err

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--no-detect", str(exp / "best"), str(files[0]), str(bad)]) == 2
    assert f"image {bad} is not a readable" in capsys.readouterr().err
    assert main(["predict", "--no-detect", str(exp / "best"), str(tmp_path / "missing.png")]) == 2
    assert "missing.png not found" in capsys.readouterr().err

    # a checkpoint file with no metrics.json beside it, and a best/ without a threshold
    bare = tmp_path / "bare"
    _save(bare, cfg, 0)
    assert main(["predict", "--no-detect", str(bare / "checkpoint.pt"), str(files[0])]) == 2
    assert "pass --threshold" in capsys.readouterr().err
    assert main(["predict", "--no-detect", str(bare / "checkpoint.pt"), str(files[0]), "--threshold", "0.5"]) == 0
    capsys.readouterr()
    (exp / "best" / "metrics.json").unlink()
    mc = json.loads((exp / "best" / "model_config.json").read_text())
    del mc["threshold"]
    (exp / "best" / "model_config.json").write_text(json.dumps(mc))
    assert main(["predict", "--no-detect", str(exp / "best"), str(files[0])]) == 2
    assert "no decision threshold" in capsys.readouterr().err


def test_deployed_best_without_checkpoint(experiment):
    """A best/ shipped without checkpoint.pt still loads from model.safetensors + model_config.json."""
    exp, cfg, learners = experiment
    best = export.export_best(exp, plots=False)
    (best / "checkpoint.pt").unlink()
    model, got_cfg, state = export.load_model(best)
    x = _probe(cfg)
    assert got_cfg == cfg and state["format"] == checkpoint.MODEL_FORMAT
    assert torch.equal(model(x).logits, learners[("t1", 1)].model.eval()(x).logits)


def test_score_split_subsample_and_empty_split(experiment, data_root):
    exp, cfg, _ = experiment
    model, _, _ = export.load_model(exp / "trials" / "t1" / checkpoint_dir_name(0))
    full = export.score_split(model, cfg, data_root, "O", "all", keep_features=True)
    part = export.score_split(model, cfg, data_root, "O", "all", max_frames=5)
    assert len(full.scores) == 18 and 3 <= len(part.scores) <= 5
    assert full.feature_matrix().shape == (18, model.feature_channels)
    # every n-th crop, the same numbers up to float32 rounding: CPU kernels may differ in the last bits
    # with the batch size (here 5 vs 18 crops per forward), so not bit-exact
    assert part.scores == pytest.approx(full.scores[:: -(-18 // 5)], rel=0, abs=1e-5)
    with pytest.raises(UserError, match="--split 'val'"):
        export.score_split(model, cfg, data_root, "O", "val")


def test_export_best_lodo(experiment, data_root):
    """lodo: the configuration whose held-out-source score is best; weights from its full run at that epoch."""
    exp, _, learners = experiment
    for d in ("O", "C", "I"):
        run = [make_record(f"t2-holdout{d}", e, v, 0.5, holdout=d, group="t2", data_root=str(data_root), **TINY)
               for e, v in enumerate([0.3, 0.05, 0.2])]
        (exp / "trials" / f"t2-holdout{d}").mkdir()
        write_records(exp / "trials" / f"t2-holdout{d}" / "records.jsonl", run)
    best = export.export_best(exp, "lodo", plots=False)
    sel = json.loads((best / "selection.json").read_text())
    assert (sel["method"], sel["trial"], sel["epoch"]) == ("lodo", "t2", 1)
    assert sel["configurations_compared"] == 1 and sel["holdout_runs"] == 3 and sel["full_runs"] == 2
    assert "leave-one-source-domain-out" in sel["how"]
    x = _probe(make_config({**TINY}))
    model, _, _ = export.load_model(best)
    assert torch.equal(model(x).logits, learners[("t2", 1)].model.eval()(x).logits)


def test_corrupt_checkpoint_exits_2_with_one_line(experiment, data_root, capsys):
    exp, _, _ = experiment
    export.export_best(exp, plots=False)
    ckpt = exp / "best" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: len(ckpt.read_bytes()) // 2])  # truncated
    assert main(["evaluate", str(ckpt), "--data", str(data_root), "--domain", "M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt cannot be read" in err and "Traceback" not in err
