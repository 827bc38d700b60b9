"""The raw-dataset converters on tiny generated videos laid out like OULU, CASIA, Replay, MSU."""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook

from anrl_ray.data import converters
from anrl_ray.data.converters import FrameSettings, convert_videos, LAYOUTS
from anrl_ray.data.format import REPORT, SCHEMA, DatasetFormatError, iter_rows, read_manifest, shard_paths
from anrl_ray.errors import UserError

FRAMES = 6  # frames per generated video
SIZE = 64  # crop size in these tests
SETTINGS = FrameSettings(frames_per_video=2, img_size=SIZE, margin=0.25)


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"  # both write and read back here
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(f)
    writer.release()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One face video per container (.avi/.mov/.mp4), a faceless one and an unreadable one."""
    root = tmp_path_factory.mktemp("clips")
    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    face = cv2.resize(photo, (120, 140), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(FRAMES):  # the photo drifts a few pixels per frame
        frame = np.full((240, 320, 3), 100, np.uint8)
        x, y = 90 + 3 * i, 40 + 2 * i
        frame[y : y + 140, x : x + 120] = face
        frames.append(frame)
    out = {}
    for ext in (".avi", ".mov", ".mp4"):
        out[ext] = root / f"face{ext}"
        _write_video(out[ext], frames)
    out["faceless"] = root / "faceless.avi"
    _write_video(out["faceless"], [rng.integers(80, 120, (240, 320, 3), dtype=np.uint8) for _ in range(FRAMES)])
    out["broken"] = root / "broken.avi"
    out["broken"].write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage, not a video" * 10)
    return out


def _place(root: Path, files: dict[str, Path]) -> Path:
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    return root


def _rows(dataset: Path) -> list[dict]:
    return list(iter_rows(dataset))


def _report(dataset: Path) -> dict:
    return json.loads((dataset / REPORT).read_text())


def _videos(rows: list[dict]) -> dict[str, tuple]:
    return {r["video_id"]: (r["split"], r["label"], r["attack_type"], r["subject_id"]) for r in rows}


def _check_rows(rows: list[dict]) -> None:
    for r in rows:
        image = cv2.imdecode(np.frombuffer(r["image"], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (SIZE, SIZE, 3) and r["image_format"] == "jpeg"
        if r["label"] == 0:
            depth = cv2.imdecode(np.frombuffer(r["depth"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert depth.shape == (SIZE, SIZE) and depth.dtype == np.uint8 and depth.max() > 150
        else:
            assert r["depth"] is None


@pytest.fixture
def oulu_root(tmp_path, clips) -> Path:
    avi = clips[".avi"]
    return _place(tmp_path / "oulu", {
        "Train_files/1_1_01_1.avi": avi,  # live
        "Train_files/1_1_01_2.avi": avi,  # print
        "Train_files/1_1_01_4.avi": avi,  # replay
        "Train_files/1_1_01_1.txt": clips["broken"],  # eye positions file: not a video, ignored
        "Train_files/2_1_02_1.avi": clips["broken"],  # unreadable
        "Train_files/1_1_03_3.avi": clips["faceless"],  # no face
        "Train_files/notes_1.avi": avi,  # fits no pattern
        "Dev_files/1_2_21_1.avi": avi,
        "Dev_files/1_2_21_3.avi": avi,
        "Test_files/6_3_36_1.avi": avi,
        "Test_files/6_3_36_5.avi": avi,
    })


def test_oulu_schema_counts_splits_and_failures(tmp_path, oulu_root):
    out = tmp_path / "data" / "O"
    manifest = convert_videos(LAYOUTS["oulu"], oulu_root, out, SETTINGS)
    assert manifest["domain"] == "O" and manifest["converter"] == "oulu"
    assert manifest["num_videos"] == 7 and manifest["num_rows"] == 14
    assert manifest["counts"] == {
        "train": {"live": {"live": 2}, "spoof": {"print": 2, "replay": 2}},
        "dev": {"live": {"live": 2}, "spoof": {"print": 2}},
        "test": {"live": {"live": 2}, "spoof": {"replay": 2}},
    }
    assert manifest["converter_args"]["frames_per_video"] == 2 and manifest["converter_args"]["detector"] == "yuface"
    assert manifest["converter_args"]["depth"] == "template-v1"
    import pyarrow.parquet as pq

    assert pq.read_schema(shard_paths(out)[0]).remove_metadata() == SCHEMA
    rows = _rows(out)
    _check_rows(rows)
    assert _videos(rows) == {
        "Train_files/1_1_01_1": ("train", 0, "live", "01"),
        "Train_files/1_1_01_2": ("train", 1, "print", "01"),
        "Train_files/1_1_01_4": ("train", 1, "replay", "01"),
        "Dev_files/1_2_21_1": ("dev", 0, "live", "21"),
        "Dev_files/1_2_21_3": ("dev", 1, "print", "21"),
        "Test_files/6_3_36_1": ("test", 0, "live", "36"),
        "Test_files/6_3_36_5": ("test", 1, "replay", "36"),
    }
    assert sorted({r["frame_index"] for r in rows}) == [1, 4]  # centres of 2 segments of 6 frames
    assert {r["source_path"] for r in rows if r["video_id"] == "Dev_files/1_2_21_1"} == {"Dev_files/1_2_21_1.avi"}

    report = _report(out)
    failed = Counter(f["source_path"] for f in report["failures"])
    assert failed == {"Train_files/notes_1.avi": 1, "Train_files/2_1_02_1.avi": 1, "Train_files/1_1_03_3.avi": 2}
    reasons = {f["source_path"]: f["reason"] for f in report["failures"]}
    assert "fits no OULU-NPU pattern" in reasons["Train_files/notes_1.avi"]
    assert "unreadable" in reasons["Train_files/2_1_02_1.avi"]
    assert "no face" in reasons["Train_files/1_1_03_3.avi"]
    assert report["failed_inputs"] == manifest["failed_inputs"] == 4


def test_casia_attack_mapping_and_deterministic_dev_carve(tmp_path, clips):
    avi = clips[".avi"]
    root = _place(tmp_path / "casia", {
        "train_release/1/1.avi": avi, "train_release/1/3.avi": avi, "train_release/1/5.avi": avi,
        "train_release/1/7.avi": avi, "train_release/2/2.avi": avi, "train_release/2/HR_2.avi": avi,
        "train_release/3/HR_1.avi": avi, "train_release/10/HR_3.avi": avi, "train_release/10/HR_4.avi": avi,
        "test_release/1/HR_1.avi": avi, "test_release/1/8.avi": avi, "test_release/1/6.avi": avi,
        "train_release/1/9.avi": avi,  # no such video in CASIA
    })
    manifest = convert_videos(LAYOUTS["casia"], root, tmp_path / "C", SETTINGS)
    videos = _videos(_rows(tmp_path / "C"))
    assert videos == {
        "train_release/1/1": ("train", 0, "live", "train_release/1"),
        "train_release/1/3": ("train", 1, "print", "train_release/1"),
        "train_release/1/5": ("train", 1, "cut", "train_release/1"),
        "train_release/1/7": ("train", 1, "replay", "train_release/1"),
        "train_release/2/2": ("train", 0, "live", "train_release/2"),
        "train_release/2/HR_2": ("train", 1, "print", "train_release/2"),
        "train_release/3/HR_1": ("train", 0, "live", "train_release/3"),
        # 4 train subjects * 0.25 -> the last one in numeric order (10 after 3, not after 1) is dev
        "train_release/10/HR_3": ("dev", 1, "cut", "train_release/10"),
        "train_release/10/HR_4": ("dev", 1, "replay", "train_release/10"),
        "test_release/1/HR_1": ("test", 0, "live", "test_release/1"),
        "test_release/1/8": ("test", 1, "replay", "test_release/1"),
        "test_release/1/6": ("test", 1, "cut", "test_release/1"),
    }
    assert manifest["converter_args"]["dev_subjects"] == ["train_release/10"]
    assert manifest["converter_args"]["dev_fraction"] == 0.25
    assert [f["source_path"] for f in _report(tmp_path / "C")["failures"]] == ["train_release/1/9.avi"]


def test_replay_attack_media_and_folders(tmp_path, clips):
    mov = clips[".mov"]
    name = "attack_highdef_client001_session01_highdef_photo_adverse.mov"
    root = _place(tmp_path / "replay", {
        "train/real/client001_session01_webcam_authenticate_adverse_1.mov": mov,
        f"train/attack/fixed/{name}": mov,
        f"train/attack/hand/{name}": mov,  # same name, other folder: another video
        "devel/real/client002_session01_webcam_authenticate_controlled_2.mov": mov,
        "devel/attack/hand/attack_print_client002_session01_highdef_photo_controlled.mov": mov,
        "test/attack/fixed/attack_mobile_client003_session01_mobile_video_adverse.mov": mov,
        "test/real/client003_session01_webcam_authenticate_adverse_1.mov": mov,
        "test/real/attack_print_client003_session01_highdef_photo_adverse.mov": mov,  # attack name in real/
        "enroll/train/client001_session01_webcam_enroll_controlled_1.mov": mov,  # not a PAD split: not read
    })
    manifest = convert_videos(LAYOUTS["replay"], root, tmp_path / "I", SETTINGS)
    videos = _videos(_rows(tmp_path / "I"))
    assert videos == {
        "train/real/client001_session01_webcam_authenticate_adverse_1": ("train", 0, "live", "001"),
        "train/attack/fixed/attack_highdef_client001_session01_highdef_photo_adverse": ("train", 1, "replay", "001"),
        "train/attack/hand/attack_highdef_client001_session01_highdef_photo_adverse": ("train", 1, "replay", "001"),
        "devel/real/client002_session01_webcam_authenticate_controlled_2": ("dev", 0, "live", "002"),
        "devel/attack/hand/attack_print_client002_session01_highdef_photo_controlled": ("dev", 1, "print", "002"),
        "test/attack/fixed/attack_mobile_client003_session01_mobile_video_adverse": ("test", 1, "replay", "003"),
        "test/real/client003_session01_webcam_authenticate_adverse_1": ("test", 0, "live", "003"),
    }
    assert manifest["num_rows"] == 14
    failures = _report(tmp_path / "I")["failures"]
    assert [f["source_path"] for f in failures] == ["test/real/attack_print_client003_session01_highdef_photo_adverse.mov"]


def test_msu_subject_lists_and_dev_carve(tmp_path, clips):
    mp4, mov = clips[".mp4"], clips[".mov"]
    root = _place(tmp_path / "msu", {
        "scene01/real/real_client001_android_SD_scene01.mp4": mp4,
        "scene01/real/real_client002_laptop_SD_scene01.mov": mov,
        "scene01/real/real_client003_laptop_SD_scene01.mov": mov,
        "scene01/attack/attack_client001_laptop_SD_ipad_video_scene01.mov": mov,
        "scene01/attack/attack_client002_android_SD_printed_photo_scene01.mp4": mp4,
        "scene01/attack/attack_client003_android_SD_iphone_video_scene01.mp4": mp4,
        "scene01/attack/attack_client009_laptop_SD_printed_photo_scene01.mov": mov,  # in no list
        "scene01/attack/attack_client001_laptop_SD_printed_photo_scene01.face": mov,  # annotation: ignored
    })
    (root / "train_sub_list.txt").write_text("01\n02\n")
    (root / "test_sub_list.txt").write_text("003\n")
    manifest = convert_videos(LAYOUTS["msu"], root, tmp_path / "M", SETTINGS)
    videos = _videos(_rows(tmp_path / "M"))
    assert videos == {
        "scene01/real/real_client001_android_SD_scene01": ("train", 0, "live", "001"),
        "scene01/attack/attack_client001_laptop_SD_ipad_video_scene01": ("train", 1, "replay", "001"),
        "scene01/real/real_client002_laptop_SD_scene01": ("dev", 0, "live", "002"),
        "scene01/attack/attack_client002_android_SD_printed_photo_scene01": ("dev", 1, "print", "002"),
        "scene01/real/real_client003_laptop_SD_scene01": ("test", 0, "live", "003"),
        "scene01/attack/attack_client003_android_SD_iphone_video_scene01": ("test", 1, "replay", "003"),
    }
    args = manifest["converter_args"]
    assert args["train_subjects"] == [1, 2] and args["test_subjects"] == [3] and args["dev_subjects"] == ["002"]
    [failure] = _report(tmp_path / "M")["failures"]
    assert "client 009" in failure["reason"]
    (root / "test_sub_list.txt").unlink()
    with pytest.raises(UserError, match="test_sub_list.txt"):
        convert_videos(LAYOUTS["msu"], root, tmp_path / "M2", SETTINGS)


def test_user_depth_maps_are_cropped_like_the_frame(tmp_path, clips):
    avi = clips[".avi"]
    root = _place(tmp_path / "oulu", {"Train_files/1_1_01_1.avi": avi, "Train_files/1_1_02_1.avi": avi,
                                      "Train_files/1_1_01_2.avi": avi})
    depth_dir = tmp_path / "depth"
    (depth_dir / "Train_files/1_1_01_1").mkdir(parents=True)
    full = np.full((240, 320), 200, np.uint8)  # full-frame renders, frames 1 and 4 are sampled
    cv2.imwrite(str(depth_dir / "Train_files/1_1_01_1/frame_0001.png"), full)
    cv2.imwrite(str(depth_dir / "Train_files/1_1_01_1/5.png"), full // 2)  # 1 frame off: nearest for 4
    settings = FrameSettings(frames_per_video=2, img_size=SIZE, depth_dir=str(depth_dir))
    manifest = convert_videos(LAYOUTS["oulu"], root, tmp_path / "O", settings)
    rows = _rows(tmp_path / "O")
    depth = {r["frame_index"]: cv2.imdecode(np.frombuffer(r["depth"], np.uint8), cv2.IMREAD_UNCHANGED)
             for r in rows if r["label"] == 0}
    assert set(depth) == {1, 4}
    assert depth[1][SIZE // 2, SIZE // 2] == 200 and depth[4][SIZE // 2, SIZE // 2] == 100
    assert manifest["converter_args"]["depth"] == str(depth_dir.resolve())
    failures = _report(tmp_path / "O")["failures"]
    assert [f["source_path"] for f in failures] == ["Train_files/1_1_02_1.avi"] * 2  # live video without renders
    assert "no readable depth map" in failures[0]["reason"]
    assert sum(r["label"] == 1 for r in rows) == 2  # spoof video needs no depth


@pytest.mark.integration  # spawns worker processes
def test_workers_give_the_same_rows(tmp_path, oulu_root):
    convert_videos(LAYOUTS["oulu"], oulu_root, tmp_path / "one", SETTINGS)
    convert_videos(LAYOUTS["oulu"], oulu_root, tmp_path / "two", SETTINGS, workers=2)
    key = lambda r: (r["video_id"], r["frame_index"])  # noqa: E731
    assert sorted(_rows(tmp_path / "one"), key=key) == sorted(_rows(tmp_path / "two"), key=key)
    assert _report(tmp_path / "one")["failures"] == _report(tmp_path / "two")["failures"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_conversion_leaves_nothing_and_keeps_the_old_dataset(tmp_path, oulu_root, monkeypatch, exc):
    out = tmp_path / "data" / "O"
    old = convert_videos(LAYOUTS["oulu"], oulu_root, out, SETTINGS)
    original_add, calls = converters.DatasetWriter.add, []

    def add_then_fail(self, **row):
        calls.append(1)
        if len(calls) == 5:
            raise exc("injected mid-way")
        original_add(self, **row)

    monkeypatch.setattr(converters.DatasetWriter, "add", add_then_fail)
    with pytest.raises(exc):  # replacing an existing dataset
        convert_videos(LAYOUTS["oulu"], oulu_root, out, SETTINGS, overwrite=True)
    assert read_manifest(out) == old  # untouched
    calls.clear()
    fresh = tmp_path / "data" / "fresh"
    with pytest.raises(exc):  # a new one
        convert_videos(LAYOUTS["oulu"], oulu_root, fresh, SETTINGS)
    with pytest.raises(DatasetFormatError):
        read_manifest(fresh)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["O"]  # no partial folders left


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anrl-ray convert")
    converters.register_cli(parser.add_subparsers(dest="dataset", required=True))
    return parser


def test_cli_registers_all_converters_and_rejects_bad_roots(tmp_path, capsys):
    parser = _parser()
    for name in ("oulu", "casia", "replay", "msu"):
        args = parser.parse_args([name, "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
        with pytest.raises(UserError, match=f"{tmp_path / 'missing'}.*expected"):
            args.func(args)
    args = parser.parse_args(["tface", "--list", "x.txt", "--out", str(tmp_path), "--domain", "O"])
    assert args.func.__module__ == "anrl_ray.data.tface"
    (tmp_path / "empty").mkdir()
    args = parser.parse_args(["oulu", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="Train_files"):
        args.func(args)
    (tmp_path / "empty/Train_files").mkdir()
    (tmp_path / "empty/Train_files/readme.avi").write_bytes(b"")
    with pytest.raises(UserError, match="no OULU-NPU video"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["casia", "--root", "r", "--out", "o", "--dev-fraction", "1.5"])
    capsys.readouterr()


def test_cli_run_writes_out_domain_and_refuses_to_overwrite(tmp_path, clips, capsys):
    root = _place(tmp_path / "casia", {"train_release/1/1.avi": clips[".avi"], "test_release/1/7.avi": clips[".avi"]})
    argv = ["casia", "--root", str(root), "--out", str(tmp_path / "data"), "--frames-per-video", "1",
            "--img-size", "32", "--dev-fraction", "0", "--detector", "haar"]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    manifest = read_manifest(tmp_path / "data" / "C")
    assert manifest["num_rows"] == 2 and manifest["converter_args"]["detector"] == "haar"
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(UserError, match="--overwrite"):
        args.func(args)
    args = _parser().parse_args(argv + ["--overwrite"])
    assert args.func(args) == 0


def test_sigterm_mid_conversion_cleans_up(tmp_path, oulu_root, monkeypatch):
    import os
    import signal

    original_add, calls = converters.DatasetWriter.add, []

    def add_then_sigterm(self, **row):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would
        original_add(self, **row)

    monkeypatch.setattr(converters.DatasetWriter, "add", add_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit):
        with converters.sigterm_raises():
            convert_videos(LAYOUTS["oulu"], oulu_root, tmp_path / "data" / "O", SETTINGS)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
