"""The raw-dataset converters on tiny generated videos laid out like OULU, CASIA, Replay, MSU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook

import anrl_ray
from anrl_ray.cli import build_parser, main
from anrl_ray.data.converters import FrameSettings, convert_videos
from anrl_ray.data.format import (
    MANIFEST, REPORT, SCHEMA, DatasetFormatError, DatasetWriter, iter_rows, read_manifest, shard_paths,
)
from anrl_ray.data.layouts import LAYOUTS
from anrl_ray.data.output import sigterm_raises
from anrl_ray.data.tface import ImportSettings, import_lists
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
    original_add, calls = DatasetWriter.add, []

    def add_then_fail(self, **row):
        calls.append(1)
        if len(calls) == 5:
            raise exc("injected mid-way")
        original_add(self, **row)

    monkeypatch.setattr(DatasetWriter, "add", add_then_fail)
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


def _convert_args(argv: list[str]):
    """``anrl-ray convert ARGV`` parsed by the real command line."""
    return build_parser().parse_args(["convert", *argv])


def test_cli_registers_all_converters_and_rejects_bad_roots(tmp_path, capsys):
    for name in ("oulu", "casia", "replay", "msu"):
        args = _convert_args([name, "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
        assert args.func.__module__ == "anrl_ray.cli.convert"
        with pytest.raises(UserError, match=f"{tmp_path / 'missing'}.*expected"):
            args.func(args)
    args = _convert_args(["tface", "--list", "x.txt", "--out", str(tmp_path), "--domain", "O"])
    assert args.func.__module__ == "anrl_ray.cli.convert"
    (tmp_path / "empty").mkdir()
    args = _convert_args(["oulu", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="Train_files"):
        args.func(args)
    (tmp_path / "empty/Train_files").mkdir()
    (tmp_path / "empty/Train_files/readme.avi").write_bytes(b"")
    with pytest.raises(UserError, match="no OULU-NPU video"):
        args.func(args)
    with pytest.raises(SystemExit):
        _convert_args(["casia", "--root", "r", "--out", "o", "--dev-fraction", "1.5"])
    capsys.readouterr()


def test_cli_run_writes_out_domain_and_refuses_to_overwrite(tmp_path, clips, capsys):
    root = _place(tmp_path / "casia", {"train_release/1/1.avi": clips[".avi"], "test_release/1/7.avi": clips[".avi"]})
    argv = ["casia", "--root", str(root), "--out", str(tmp_path / "data"), "--frames-per-video", "1",
            "--img-size", "32", "--dev-fraction", "0", "--detector", "haar"]
    args = _convert_args(argv)
    assert args.func(args) == 0
    manifest = read_manifest(tmp_path / "data" / "C")
    assert manifest["num_rows"] == 2 and manifest["converter_args"]["detector"] == "haar"
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(UserError, match="--overwrite"):
        args.func(args)
    args = _convert_args(argv + ["--overwrite"])
    assert args.func(args) == 0


def test_sigterm_mid_conversion_cleans_up(tmp_path, oulu_root, monkeypatch):
    original_add, calls = DatasetWriter.add, []

    def add_then_sigterm(self, **row):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would
        original_add(self, **row)

    monkeypatch.setattr(DatasetWriter, "add", add_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit):
        with sigterm_raises():
            convert_videos(LAYOUTS["oulu"], oulu_root, tmp_path / "data" / "O", SETTINGS)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


# ----------------------------------------------------------------------------------------
# Output safety: dataset names, --overwrite over non-dataset folders, stale partial folders


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../up", "/abs", ".hidden", "-dash", "sp ace"])
def test_bad_domain_names_are_refused_before_anything_is_written(tmp_path, oulu_root, capsys, bad):
    out = tmp_path / "data"
    argv = ["convert", "oulu", "--root", str(oulu_root), "--out", str(out), f"--domain={bad}", "--detector", "haar"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--domain" in err and "plain dataset name" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "up").exists()
    with pytest.raises(UserError, match="--domain"):  # the library function checks too
        convert_videos(LAYOUTS["oulu"], oulu_root, out / "O", SETTINGS, domain=bad)
    with pytest.raises(UserError, match="output folder"):
        convert_videos(LAYOUTS["oulu"], oulu_root, out / "..", SETTINGS)
    assert main(["convert", "tface", "--list", str(tmp_path / "l.txt"), "--out", str(out), f"--domain={bad}"]) == 2
    assert main(["convert", "synthetic", "--out", str(out), f"--domains=O,{bad}x" if bad else "--domains=O,/x"]) == 2
    assert "plain dataset name" in capsys.readouterr().err
    assert not out.exists()


def test_overwrite_replaces_only_dataset_folders(tmp_path, clips, capsys):
    root = _place(tmp_path / "casia", {"train_release/1/1.avi": clips[".avi"], "test_release/1/7.avi": clips[".avi"]})
    out = tmp_path / "data"
    (out / "C").mkdir(parents=True)
    (out / "C" / "thesis.tex").write_text("my own work")
    (out / "C" / MANIFEST).write_text("{}")  # a manifest.json, but not of this format
    argv = ["convert", "casia", "--root", str(root), "--out", str(out), "--frames-per-video", "1", "--img-size", "32",
            "--dev-fraction", "0", "--detector", "haar", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not an anrl-ray dataset" in err and str(out / "C") in err
    assert (out / "C" / "thesis.tex").read_text() == "my own work"  # left intact
    assert sorted(p.name for p in out.iterdir()) == ["C"]
    (out / "C").rename(out / "mine")
    assert main(argv) == 0  # nothing there: written
    assert main(argv) == 0  # a dataset folder: replaced
    assert read_manifest(out / "C")["num_rows"] == 2
    # the same rule for tface and the synthetic generator
    (out / "O").mkdir()
    (out / "O" / "notes.txt").write_text("keep")
    lst = tmp_path / "l.txt"
    lst.write_text("x.png 0\n")
    assert main(["convert", "tface", "--list", str(lst), "--out", str(out), "--domain", "O", "--overwrite"]) == 2
    assert main(["convert", "synthetic", "--out", str(out), "--domains", "O", "--subjects", "3", "--overwrite"]) == 2
    assert "not an anrl-ray dataset" in capsys.readouterr().err
    assert (out / "O" / "notes.txt").read_text() == "keep" and sorted(p.name for p in (out / "O").iterdir()) == ["notes.txt"]
    (out / "file").write_text("a file, not a folder")
    with pytest.raises(UserError, match="not an anrl-ray dataset"):
        convert_videos(LAYOUTS["casia"], root, out / "file", SETTINGS, overwrite=True)
    assert (out / "file").read_text() == "a file, not a folder"


def _sigkilled_writer(out_dir: Path) -> Path:
    """Start a conversion in another process, SIGKILL it mid-way; return the partial folder it left."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from anrl_ray.data.format import DatasetWriter\n"
        "w = DatasetWriter(Path(sys.argv[1]), domain='O', converter='test', shard_max_rows=1)\n"
        "w.__enter__()\n"
        "w.add(image=b'x', image_format='jpeg', label=1, attack_type='print', subject_id='1', video_id='v',\n"
        "      frame_index=0, split='train', source_path='v.avi')\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(anrl_ray.__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", code, str(out_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    partial = out_dir.with_name(f".{out_dir.name}.partial-{child.pid}")
    assert partial.is_dir() and (partial / "part-00000.parquet").is_file()  # what SIGKILL leaves behind
    return partial


def test_stale_partial_folders_of_dead_processes_are_removed(tmp_path, oulu_root):
    out = tmp_path / "data"
    killed = _sigkilled_writer(out / "O")
    empty = out / f".C.partial-{_dead_pid()}"  # killed right after creating its folder
    empty.mkdir()
    running = out / f".I.partial-{os.getpid()}"  # a conversion still running (this process)
    running.mkdir()
    (running / "part-00000.parquet").write_bytes(b"in progress")
    foreign = out / f".M.partial-{_dead_pid()}"  # named like ours, but holds other files: not ours to delete
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    convert_videos(LAYOUTS["oulu"], oulu_root, out / "O", SETTINGS)
    assert not killed.exists() and not empty.exists()
    assert (running / "part-00000.parquet").read_bytes() == b"in progress"
    assert (foreign / "notes.txt").read_text() == "keep"
    assert read_manifest(out / "O")["num_rows"] == 14
    # the other converters clean up the same way
    stale = out / f".X.partial-{_dead_pid()}"
    stale.mkdir()
    lst = tmp_path / "l.txt"
    lst.write_text("")
    with pytest.raises(DatasetFormatError):  # an empty list converts nothing, after the clean-up
        import_lists([lst], ["train"], out / "T", "T", ImportSettings())
    assert not stale.exists()
    stale.mkdir()
    assert main(["convert", "synthetic", "--out", str(out), "--domains", "O", "--subjects", "3"]) == 2  # O exists
    assert not stale.exists() and running.exists()
