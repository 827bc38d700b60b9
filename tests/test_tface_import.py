"""Importing the reference implementation's (Tencent/TFace ANRL) data lists and LMDB store."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import cv2
import lmdb
import numpy as np
import pytest
from matplotlib import cbook

from anrl_ray.cli import build_parser
from anrl_ray.data import tface
from anrl_ray.data.format import REPORT, iter_rows, read_manifest
from anrl_ray.data.tface import ImportSettings, import_lists
from anrl_ray.errors import UserError

PREFIX = "/data/fas/Oulu_NPU"
BOX = (50.0, 40.0, 100.0, 120.0)
LANDMARKS = [[80.0, 90.0], [120.0, 90.0], [100.0, 115.0], [85.0, 135.0], [115.0, 135.0]]


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _line(path: str, label, box=BOX, landmarks=LANDMARKS) -> str:
    fields = [path, str(label), *(f"{v:g}" for v in box), *(f"{v:g}" for p in landmarks for v in p)]
    return " ".join(fields)


@pytest.fixture(scope="module")
def face_png() -> bytes:
    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return _png(cv2.resize(photo, (200, 200), interpolation=cv2.INTER_AREA))


# A depth map whose value is its column (0..199): shows which window was cut.
GRADIENT = np.tile(np.arange(200, dtype=np.uint8), (200, 1))


@pytest.fixture
def reference_store(tmp_path, face_png):
    """An LMDB laid out like the reference's, and a train list and a dev list over it."""
    live1, live2 = f"{PREFIX}/Train_files/1_1_01_1/001.png", f"{PREFIX}/Train_files/1_1_01_1/002.png"
    spoof = f"{PREFIX}/Train_files/1_1_01_2/frame_7.png"
    dev = f"{PREFIX}/Dev_files/1_2_21_1/003.png"
    replay = f"{PREFIX}/Train_files/1_1_01_4/001.png"
    entries = {live1: face_png, live2: face_png, spoof: face_png, dev: face_png, replay: face_png,
               live1.replace("Oulu_NPU", "Oulu_NPU_depth"): _png(GRADIENT),
               dev.replace("Oulu_NPU", "Oulu_NPU_depth"): _png(GRADIENT)}  # live2 has no depth
    env = lmdb.open(str(tmp_path / "lmdb"), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key.encode(), value)
    env.close()
    train = tmp_path / "Oulu_train_list.txt"
    train.write_text("\n".join([
        _line(live1, 0), _line(live2, 0), _line(spoof, 1),
        f"{PREFIX}/Train_files/1_1_01_1/004.png x",  # bad label
        _line(f"{PREFIX}/Train_files/1_1_01_1/009.png", 0),  # not in the LMDB
        _line(replay, 0),  # a replay video labelled live
        _line(live1, 0),  # listed twice
        "",
    ]))
    dev_list = tmp_path / "Oulu_dev_list.txt"
    dev_list.write_text(f"{dev} 0\n")  # no box or landmarks: fine without cropping
    return tmp_path / "lmdb", train, dev_list


def _failures(out: Path) -> dict[str, str]:
    return {f["source_path"]: f["reason"] for f in json.loads((out / REPORT).read_text())["failures"]}


def test_lmdb_lists_labels_depth_and_splits(tmp_path, reference_store):
    lmdb_dir, train, dev = reference_store
    out = tmp_path / "data" / "O"
    manifest = import_lists([train, dev], [None, None], out, "O", ImportSettings(img_size=64, layout="oulu"),
                            lmdb_dir=lmdb_dir)
    rows = {r["source_path"]: r for r in iter_rows(out)}
    assert set(rows) == {f"{PREFIX}/Train_files/1_1_01_1/001.png", f"{PREFIX}/Train_files/1_1_01_2/frame_7.png",
                         f"{PREFIX}/Dev_files/1_2_21_1/003.png"}
    live = rows[f"{PREFIX}/Train_files/1_1_01_1/001.png"]
    assert (live["label"], live["attack_type"], live["split"], live["video_id"], live["subject_id"], live["frame_index"]) == (
        0, "live", "train", "Train_files/1_1_01_1", "01", 1)
    depth = cv2.imdecode(np.frombuffer(live["depth"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (64, 64) and depth[10, 0] < 5 and depth[10, -1] > 190  # whole gradient, resized
    assert cv2.imdecode(np.frombuffer(live["image"], np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    spoof = rows[f"{PREFIX}/Train_files/1_1_01_2/frame_7.png"]
    assert (spoof["label"], spoof["attack_type"], spoof["depth"], spoof["frame_index"]) == (1, "print", None, 7)
    assert rows[f"{PREFIX}/Dev_files/1_2_21_1/003.png"]["split"] == "dev"
    assert manifest["counts"] == {"train": {"live": {"live": 1}, "spoof": {"print": 1}}, "dev": {"live": {"live": 1}}}

    failures = _failures(out)
    assert set(failures) == {f"{train}:{n}" for n in (2, 4, 5, 6, 7)}
    assert "no readable depth map" in failures[f"{train}:2"] and "Oulu_NPU_depth" in failures[f"{train}:2"]
    assert "not an integer" in failures[f"{train}:4"]
    assert "not found in the LMDB" in failures[f"{train}:5"]
    assert "contradicts" in failures[f"{train}:6"] and "--live-label" in failures[f"{train}:6"]
    assert "already listed" in failures[f"{train}:7"]
    assert manifest["converter_args"]["live_label"] == 0 and manifest["converter_args"]["lmdb"] == str(lmdb_dir.resolve())


def test_reference_crop_cuts_image_and_depth_alike_and_template_fallback(tmp_path, reference_store):
    lmdb_dir, train, _ = reference_store
    settings = ImportSettings(img_size=32, crop="landmarks", margin=2.0, layout="oulu", missing_depth="template")
    import_lists([train], ["dev"], tmp_path / "O", "O", settings, lmdb_dir=lmdb_dir)
    rows = {r["source_path"]: r for r in iter_rows(tmp_path / "O")}
    assert {r["split"] for r in rows.values()} == {"dev"}  # --split wins over the path
    # Landmark extent x 80..120, y 90..135 -> side 45, grown by 45 per side, clipped to 200x200.
    x1, y1, x2, y2 = tface.reference_face_box(tface.landmark_box(np.array(LANDMARKS)), 2.0, (200, 200))
    assert (x1, y1, x2, y2) == (35, 45, 170, 180)
    depth = cv2.imdecode(np.frombuffer(rows[f"{PREFIX}/Train_files/1_1_01_1/001.png"]["depth"], np.uint8), -1)
    assert abs(int(depth[16, 0]) - x1) <= 3 and abs(int(depth[16, -1]) - (x2 - 1)) <= 3
    templated = cv2.imdecode(np.frombuffer(rows[f"{PREFIX}/Train_files/1_1_01_1/002.png"]["depth"], np.uint8), -1)
    assert templated[0, 0] == 0 and templated.max() > 200  # procedural face where the list has no depth


def test_files_without_lmdb_live_label_1_and_default_attack(tmp_path, face_png):
    (tmp_path / "imgs/v1").mkdir(parents=True)
    (tmp_path / "imgs/v2").mkdir(parents=True)
    (tmp_path / "imgs/v1/0.png").write_bytes(face_png)
    (tmp_path / "imgs/v2/0.png").write_bytes(face_png)
    lst = tmp_path / "ssdg_style.txt"
    lst.write_text("imgs/v1/0.png 1\nimgs/v2/0.png 0\n")  # 1 = real here
    settings = ImportSettings(img_size=48, live_label=1, missing_depth="none", layout=None)
    import_lists([lst], ["test"], tmp_path / "X", "X", settings, image_root=tmp_path)
    failures = _failures(tmp_path / "X")
    assert list(failures) == [f"{lst}:2"] and "--default-attack" in failures[f"{lst}:2"]
    settings = ImportSettings(img_size=48, live_label=1, missing_depth="none", layout=None, default_attack="replay")
    manifest = import_lists([lst], ["test"], tmp_path / "Y", "Y", settings, image_root=tmp_path)
    rows = {r["source_path"]: r for r in iter_rows(tmp_path / "Y")}
    assert (rows["imgs/v1/0.png"]["label"], rows["imgs/v1/0.png"]["depth"]) == (0, None)  # live, kept without depth
    assert (rows["imgs/v2/0.png"]["label"], rows["imgs/v2/0.png"]["attack_type"]) == (1, "replay")
    assert rows["imgs/v2/0.png"]["video_id"] == "imgs/v2" and manifest["failed_inputs"] == 0


def test_list_line_box_depth_key_and_path_naming_rules():
    entry = tface.parse_list_line(_line("a/b.png", 1), "l.txt", 3)
    assert entry.label == 1 and entry.box == BOX and entry.landmarks.shape == (5, 2) and entry.where == "l.txt:3"
    assert tface.parse_list_line("a/b.png 0", "l", 1).box is None
    assert tface.parse_list_line("   ", "l", 1) is None
    with pytest.raises(ValueError):
        tface.parse_list_line("a/b.png", "l", 1)
    # Reference geometry: square of max(w, h) at the box's top-left, grown by int(side*m/2), clipped.
    assert tface.reference_face_box((10, 20, 30, 40), 2.0, (200, 200)) == (0, 0, 90, 100)
    assert tface.reference_face_box((10, 20, 30, 40), 0.5, (50, 200)) == (0, 10, 60, 50)
    assert tface.reference_depth_key("/d/replayattack/x/Oulu_NPU/1.png") == "/d/replayattack_depth/x/Oulu_NPU/1.png"
    assert tface.reference_depth_key("/d/MSU-MFSD/MSU-MFSD/1.png") == "/d/MSU-MFSD_depth/MSU-MFSD_depth/1.png"
    assert tface.reference_depth_key("/d/other/1.png") is None
    meta = tface.meta_from_path("/x/CASIA_database/test_release/12/HR_4/0042.jpg", "casia")
    assert (meta.video_id, meta.subject_id, meta.attack_type, meta.split) == (
        "test_release/12/HR_4", "test_release/12", "replay", "test")
    meta = tface.meta_from_path("/x/replayattack/devel/attack/hand/attack_mobile_client007_session01_mobile_photo"
                                "_controlled.mov/12.png", "replay")
    assert (meta.attack_type, meta.split, meta.subject_id) == ("replay", "dev", "007")
    assert meta.video_id.endswith("_controlled")
    assert tface.meta_from_path("/x/MSU-MFSD/scene01/real/real_client005_laptop_SD_scene01/1.png", "msu").split is None
    assert tface.meta_from_path("/x/y/z/1.png", "oulu") is None and tface.meta_from_path("/x/1.png", None) is None


def _convert_args(argv: list[str]):
    """``anrl-ray convert ARGV`` parsed by the real command line."""
    return build_parser().parse_args(["convert", *argv])


def test_cli(tmp_path, reference_store, face_png, capsys):
    lmdb_dir, train, dev = reference_store
    base = ["tface", "--out", str(tmp_path / "data"), "--domain", "O", "--lmdb", str(lmdb_dir), "--img-size", "200"]
    args = _convert_args(base + ["--list", str(train), "--list", str(dev), "--split", "train"])
    assert args.func(args) == 0
    manifest = read_manifest(tmp_path / "data" / "O")
    assert manifest["converter"] == "tface" and manifest["converter_args"]["splits"] == ["train", "train"]
    row = next(r for r in iter_rows(tmp_path / "data" / "O") if r["source_path"].endswith("1_1_01_1/001.png"))
    assert row["image"] == face_png and row["image_format"] == "png"  # right size already: stored as is
    assert "wrote" in capsys.readouterr().out
    args = _convert_args(base + ["--overwrite", "--list", str(train), "--list", str(dev),
                                        "--split", "train", "--split", "dev", "--split", "test"])
    with pytest.raises(UserError, match="3 --split values for 2 --list"):
        args.func(args)
    args = _convert_args(base + ["--overwrite", "--list", str(tmp_path / "nope.txt")])
    with pytest.raises(UserError, match="nope.txt"):
        args.func(args)
    args = _convert_args(["tface", "--out", str(tmp_path / "d2"), "--domain", "O", "--list", str(train),
                                 "--lmdb", str(tmp_path / "no_lmdb")])
    with pytest.raises(UserError, match="no_lmdb"):
        args.func(args)
    assert not (tmp_path / "d2").exists()
    assert PurePosixPath(manifest["converter_args"]["lists"][0]).name == train.name
