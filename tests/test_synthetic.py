"""Synthetic benchmark generator: determinism, counts, schema, splits, depth, CLI."""

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from anrl_ray.data import synthetic
from anrl_ray.data.synthetic import render
from anrl_ray.data.format import SCHEMA, iter_rows, read_manifest
from anrl_ray.errors import UserError

SMALL = dict(subjects=3, videos_per_subject=1, frames_per_video=2, img_size=32)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "a"
    summary = synthetic.generate(root, seed=0, domains=("O", "C"), **SMALL)
    return root, summary


def _shard_bytes(root: Path, domain: str) -> list[bytes]:
    return [(root / domain / s["file"]).read_bytes() for s in read_manifest(root / domain)["shards"]]


def test_same_seed_same_bytes(small, tmp_path):
    root, _ = small
    synthetic.generate(tmp_path / "b", seed=0, domains=("O", "C"), **SMALL)
    for d in ("O", "C"):
        assert _shard_bytes(root, d) == _shard_bytes(tmp_path / "b", d)
    synthetic.generate(tmp_path / "c", seed=1, domains=("O",), **SMALL)
    assert _shard_bytes(root, "O") != _shard_bytes(tmp_path / "c", "O")


def test_counts_schema_and_manifest(small):
    root, summary = small
    for d in ("O", "C"):
        kinds = ["live", *synthetic.DOMAIN_PROFILES[d].attacks]
        expected = SMALL["subjects"] * len(kinds) * SMALL["videos_per_subject"] * SMALL["frames_per_video"]
        m = read_manifest(root / d)
        assert m["num_rows"] == expected == summary["domains"][d]["rows"]
        assert m["converter"] == "synthetic" and m["converter_args"]["seed"] == 0
        assert pq.read_schema(root / d / m["shards"][0]["file"]).remove_metadata().equals(SCHEMA)
        rows = list(iter_rows(root / d))
        assert {r["attack_type"] for r in rows} == set(kinds)
        assert all(r["domain"] == d and r["video_id"].startswith(d) for r in rows)
        per_video = {}
        for r in rows:
            per_video.setdefault(r["video_id"], []).append(r["frame_index"])
        assert all(sorted(v) == list(range(SMALL["frames_per_video"])) for v in per_video.values())
        total = sum(n for split in m["counts"].values() for cls in split.values() for n in cls.values())
        assert total == expected
    assert "cut" in synthetic.DOMAIN_PROFILES["C"].attacks and "cut" not in synthetic.DOMAIN_PROFILES["O"].attacks
    assert summary["frames_per_second"] > 0


def test_subjects_disjoint_across_splits(small):
    root, _ = small
    for d in ("O", "C"):
        split_of = {}
        for r in iter_rows(root / d, columns=["subject_id", "split"]):
            split_of.setdefault(r["subject_id"], set()).add(r["split"])
        assert all(len(s) == 1 for s in split_of.values()), split_of
        assert {next(iter(s)) for s in split_of.values()} == {"train", "dev", "test"}


def test_split_fractions_for_more_subjects():
    splits = synthetic.split_subjects(20, np.random.default_rng(0))
    counts = {s: list(splits.values()).count(s) for s in ("train", "dev", "test")}
    assert counts == {"train": 10, "dev": 4, "test": 6}


def test_depth_only_for_live_and_images_decode(small):
    root, _ = small
    size = SMALL["img_size"]
    for r in iter_rows(root / "O"):
        img = cv2.imdecode(np.frombuffer(r["image"], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (size, size, 3) and r["image_format"] == "jpeg"
        if r["label"] == 1:
            assert r["depth"] is None
            continue
        depth = cv2.imdecode(np.frombuffer(r["depth"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert depth.shape == (size, size) and depth.dtype == np.uint8
        assert depth[size // 2, size // 2] > 100  # the face is in the middle of the crop
        assert depth[0, 0] == 0 and depth[-1, -1] == 0  # background: no depth


def test_depth_is_the_rendered_height_field():
    """The stored depth is the exact surface used for shading: highest at the nose, 0 off the head."""
    R = 96
    rng = np.random.default_rng(0)
    subj = render.sample_subject(rng, synthetic.DOMAIN_PROFILES["O"])
    pose = render.Pose(cx=R / 2, cy=R / 2, a=R * 0.3, roll=0.0, yaw=0.0, pitch=0.0)
    light = render.sample_light(rng, synthetic.DOMAIN_PROFILES["O"], synthetic.DOMAIN_PROFILES["O"].lightings[0])
    rgb, alpha, depth = render.render_person(R, subj, pose, light, np.zeros((R, R, 1), np.float32))
    b = pose.a * subj.aspect
    yy, xx = np.mgrid[0:R, 0:R] + 0.5
    r2 = ((xx - pose.cx) / pose.a) ** 2 + ((yy - pose.cy) / b) ** 2
    assert np.all(depth[r2 > 1.0] == 0) and np.all(depth[r2 < 0.9] > 0)
    assert np.all(alpha[r2 < 0.9] > 0.99)
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    assert abs(x + 0.5 - pose.cx) <= 2  # the nose is the nearest point of a frontal face
    assert 0 < (y + 0.5 - pose.cy) / b < 0.4
    # shading follows the same surface: a light from the left makes the left cheek brighter
    left = render.Light(0.1, 0.9, np.array([-0.8, 0.0, 0.6], np.float32), np.ones(3, np.float32))
    lit, _, _ = render.render_person(R, subj, pose, left, np.zeros((R, R, 1), np.float32))
    cheek_y = int(pose.cy + 0.2 * b)
    dx = int(0.5 * pose.a)
    assert lit[cheek_y, int(pose.cx) - dx].mean() > lit[cheek_y, int(pose.cx) + dx].mean()


def test_refuses_existing_output_and_bad_arguments(small, tmp_path):
    root, _ = small
    with pytest.raises(UserError, match="overwrite"):
        synthetic.generate(root, domains=("O",), **SMALL)
    with pytest.raises(UserError, match="unknown domain"):
        synthetic.generate(tmp_path, domains=("X",), **SMALL)
    with pytest.raises(UserError, match="at least 3"):
        synthetic.generate(tmp_path, subjects=2)
    with pytest.raises(UserError, match="multiple of 8"):
        synthetic.generate(tmp_path, img_size=30)


def test_cli_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="dataset")
    synthetic.register_cli(sub)
    out = tmp_path / "cli"
    args = parser.parse_args(["synthetic", "--out", str(out), "--domains", "M", "--subjects", "3",
                              "--videos-per-subject", "1", "--frames-per-video", "1", "--img-size", "16"])
    assert args.func(args) == 0
    assert read_manifest(out / "M")["num_rows"] == 3 * 3  # live + print + replay, one frame each
    assert '"frames_per_second"' in capsys.readouterr().out
    args = parser.parse_args(["synthetic", "--out", str(out), "--domains", "M", "--subjects", "3", "--overwrite",
                              "--frames-per-video", "1", "--videos-per-subject", "1", "--img-size", "16"])
    assert args.func(args) == 0


def test_default_benchmark_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEFAULTS", dict(subjects=3, videos_per_subject=1, frames_per_video=1, img_size=16))
    root = synthetic.ensure_default_benchmark(tmp_path)
    stamp = {d: (Path(root) / d / "manifest.json").stat().st_mtime_ns for d in synthetic.DOMAINS}
    assert synthetic.ensure_default_benchmark(tmp_path) == root
    assert stamp == {d: (Path(root) / d / "manifest.json").stat().st_mtime_ns for d in synthetic.DOMAINS}


def test_default_size_is_small():
    d = synthetic.DEFAULTS
    rows = sum(d["subjects"] * (1 + len(p.attacks)) * d["videos_per_subject"] * d["frames_per_video"]
               for p in synthetic.DOMAIN_PROFILES.values())
    assert d["img_size"] <= 64 and rows <= 3000, "the default benchmark must stay quick to generate on 2 CPUs"
    assert math.isclose(sum(synthetic.SPLIT_FRACTIONS.values()), 0.7)
