"""anrl-ray predict on ordinary photos: face detection, crops like the converters', annotated output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from anrl_ray.checkpoint import model_card, save_checkpoint, write_bundle
from anrl_ray.cli import main
from anrl_ray.config import make_config
from anrl_ray.data import faces
from anrl_ray.data.format import SCHEMA_VERSION
from anrl_ray.data.transforms import FASTransform
from anrl_ray.errors import UserError
from anrl_ray.factory import build_learner
from anrl_ray.predict import NO_FACE, Predictor, annotated_paths, predict_images, training_crop_settings

TINY = {"img_size": 32, "width": 0.25}
THRESHOLD = 0.5
# Grace Hopper's face in matplotlib's sample photo (512 x 600), drawn by hand: x, y, w, h
FACE_IN_SAMPLE = (180, 115, 175, 220)
PASTE_AT = (500, 200)  # where the photo goes on the larger canvas (x, y)


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _build_best(folder: Path, data_root: str = "") -> tuple[Path, torch.nn.Module]:
    """A tiny exported best/ (untrained weights; scores only need to be real probabilities)."""
    cfg = make_config({**TINY, "data_root": data_root})
    learner = build_learner(cfg)
    ck = folder / "ck"
    ck.mkdir(parents=True)
    save_checkpoint(ck / "checkpoint.pt", learner, torch.optim.Adam(learner.parameters()), None, 0,
                    [torch.Generator().get_state()], cfg)
    model = learner.model.eval()
    best = write_bundle(folder / "best", folder / "best.tmp", model, cfg, ck / "checkpoint.pt",
                        card=model_card(model, cfg, THRESHOLD), metrics={"threshold": THRESHOLD}, selection={})
    return best, model


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    return _build_best(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A face photo pasted on a larger grey canvas, the same with a second smaller face, and a blank image."""
    from matplotlib import cbook

    face = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert face.shape == (600, 512, 3)
    d = tmp_path_factory.mktemp("photos")
    canvas = np.full((1000, 1400, 3), 120, np.uint8)
    x, y = PASTE_AT
    canvas[y : y + 600, x : x + 512] = face
    cv2.imwrite(str(d / "one_face.jpg"), canvas)
    two = canvas.copy()
    small = cv2.resize(face, (256, 300), interpolation=cv2.INTER_AREA)
    two[50:350, 60:316] = small
    cv2.imwrite(str(d / "two_faces.png"), two)
    cv2.imwrite(str(d / "blank.png"), np.full((480, 640, 3), 200, np.uint8))
    return d


def _torch_scores(model, encoded: list[bytes]) -> np.ndarray:
    x, _ = FASTransform(TINY["img_size"], 6).batch(encoded, [None] * len(encoded), [0] * len(encoded))
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)).logits, 1)[:, 1].numpy()


def test_photo_face_detected_and_cropped_like_the_converters(best, photos, capsys):
    best_dir, model = best
    img = str(photos / "one_face.jpg")
    assert main(["predict", str(best_dir), img, "--device", "cpu"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 1
    path, face, box, score, decision = lines[0].split("\t")
    assert path == img and face == "0"
    box = tuple(int(v) for v in box.split(","))
    want_box = (FACE_IN_SAMPLE[0] + PASTE_AT[0], FACE_IN_SAMPLE[1] + PASTE_AT[1], *FACE_IN_SAMPLE[2:])
    assert _iou(box, want_box) > 0.5, (box, want_box)
    score = float(score)
    assert 0.0 <= score <= 1.0 and decision == ("spoof" if score >= THRESHOLD else "live")
    # no data root in the config: the converters' defaults, said on stderr
    assert "margin 0.25, 256 px, JPEG quality 95" in out.err and "defaults" in out.err

    # the score is that of the converters' crop: square, margin 0.25, 256 px, JPEG 95, then FASTransform
    image = cv2.imread(img)
    found = faces.main_face(faces.create_detector("auto").detect(image))
    crop = faces.encode_jpeg(faces.crop_square(image, found.box, 0.25, 256).image, 95)
    np.testing.assert_allclose(score, _torch_scores(model, [crop])[0], atol=1e-6)
    # a different margin gives a different crop, hence (almost surely) another score
    wide = predict_images(best_dir, [img], device="cpu", margin=1.0)
    assert len(wide) == 1 and wide[0].box == box and abs(wide[0].score - score) > 1e-7


def test_all_faces_largest_first_and_main_face(best, photos, capsys):
    best_dir, _ = best
    img = str(photos / "two_faces.png")
    preds = predict_images(best_dir, [img], device="cpu")
    assert [p.face for p in preds] == [0, 1]
    assert preds[0].box[2] * preds[0].box[3] > preds[1].box[2] * preds[1].box[3]
    assert _iou(preds[1].box, (60 + 90, 50 + 57, 88, 110)) > 0.4  # the half-size copy, top left
    assert main(["predict", str(best_dir), img, "--main-face", "--device", "cpu"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line == preds[0].line()
    # the Haar fallback finds the same face
    (haar,) = predict_images(best_dir, [str(photos / "one_face.jpg")], device="cpu", detector="haar")
    want_box = (FACE_IN_SAMPLE[0] + PASTE_AT[0], FACE_IN_SAMPLE[1] + PASTE_AT[1], *FACE_IN_SAMPLE[2:])
    assert _iou(haar.box, want_box) > 0.4


def test_blank_image_says_no_face(best, photos, capsys):
    best_dir, _ = best
    blank, one = str(photos / "blank.png"), str(photos / "one_face.jpg")
    assert main(["predict", str(best_dir), blank, one, "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{blank}\t{NO_FACE}"
    assert len(lines) == 2 and lines[1].startswith(f"{one}\t0\t")


def test_no_detect_scores_the_crop_as_is(best, photos, tmp_path, capsys):
    best_dir, model = best
    image = cv2.imread(str(photos / "one_face.jpg"))
    crops = []
    for i, margin in enumerate((0.25, 0.6, 1.0)):
        f = tmp_path / f"crop{i}.jpg"
        f.write_bytes(faces.encode_jpeg(faces.crop_square(image, (680, 320, 176, 216), margin, 96).image))
        crops.append(f)
    # batch size 2: crops of several images are pooled and split across batches
    argv = ["predict", str(best_dir), *map(str, crops), "--no-detect", "--device", "cpu", "--batch-size", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    want = _torch_scores(model, [f.read_bytes() for f in crops])
    assert [line.split("\t")[0] for line in lines] == list(map(str, crops))
    got = [float(line.split("\t")[1]) for line in lines]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert all(line.split("\t")[2] == ("spoof" if s >= THRESHOLD else "live") for line, s in zip(lines, got))
    assert len({round(s, 6) for s in got}) == 3  # three different crops, three scores
    # the blank image has no face, but with --no-detect it is scored as a crop
    assert main(["predict", str(best_dir), str(photos / "blank.png"), "--no-detect", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.strip().split("\t")) == 3


def test_save_annotated(best, photos, tmp_path, capsys):
    best_dir, _ = best
    out = tmp_path / "out" / "nested"
    images = [photos / "one_face.jpg", photos / "blank.png", photos / "two_faces.png"]
    before = {p: p.read_bytes() for p in images}
    assert main(["predict", str(best_dir), *map(str, images), "--save-annotated", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["blank_annotated.png", "one_face_annotated.png",
                                                      "two_faces_annotated.png"]
    for p in images:
        assert p.read_bytes() == before[p]  # inputs untouched
        ann = cv2.imread(str(out / f"{p.stem}_annotated.png"))
        src = cv2.imread(str(p))
        assert ann.shape == src.shape
        assert (np.abs(ann.astype(int) - src.astype(int)).sum(axis=2) > 60).mean() > 0.0005  # something drawn
    # the box of the face is drawn in the decision's colour (green live, red spoof) on its left edge
    _, _, box, _, decision = lines[0].split("\t")
    x, y, w, h = (int(v) for v in box.split(","))
    ann = cv2.imread(str(out / "one_face_annotated.png")).astype(int)
    edge = ann[y + h // 2 - 5 : y + h // 2 + 5, x].mean(axis=0)  # BGR
    assert (edge[1] > edge[2] + 60) if decision == "live" else (edge[2] > edge[1] + 60), edge


def test_annotated_names_never_replace_an_input(tmp_path):
    a, b = tmp_path / "x" / "face.jpg", tmp_path / "y" / "face.png"
    assert [p.name for p in annotated_paths(tmp_path / "o", [a, b])] == ["face_annotated.png", "face_2_annotated.png"]
    with pytest.raises(UserError, match="is one of the input images"):
        annotated_paths(tmp_path, [tmp_path / "face.png", tmp_path / "face_annotated.png"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        annotated_paths(tmp_path / "file", [a])


def test_bad_input_exits_2_with_one_line(best, photos, tmp_path, capsys):
    best_dir, _ = best
    good = str(photos / "one_face.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    bad_ckpt = tmp_path / "broken" / "checkpoint.pt"
    bad_ckpt.parent.mkdir()
    bad_ckpt.write_bytes(b"")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02junk" * 10)
    cases = [
        ([str(best_dir), good, str(empty)], "empty.jpg is empty (0 bytes)"),
        ([str(best_dir), str(text), good], "notes.jpg is not a readable JPEG/PNG image"),
        ([str(best_dir), str(tmp_path / "missing.png")], "missing.png not found"),
        ([str(best_dir), str(tmp_path)], "is not a file"),
        ([str(bad_ckpt.parent), good], "cannot be read"),
        ([str(bad_ckpt), good, "--threshold", "0.5"], "cannot be read"),
        ([str(garbage), good, "--threshold", "0.5"], "cannot be read"),
        ([str(tmp_path / "nope"), good], "not found"),
        ([str(best_dir), good, "--margin", "-1"], "--margin -1.0: must be a number >= 0"),
        ([str(best_dir), good, "--batch-size", "0"], "--batch-size 0"),
    ]
    for argv, message in cases:
        assert main(["predict", *argv, "--device", "cpu"]) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert "\n" not in err and "Traceback" not in err and message in err, (argv, err)
        assert captured.out == ""  # nothing scored before the error


def _manifest(folder: Path, converter: str, args: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "converter": converter, "converter_args": args,
        "shards": [{"file": "part-00000.parquet", "rows": 1, "bytes": 1, "sha256": "0"}], "counts": {},
    }))


def test_margin_from_the_training_data(tmp_path, photos):
    data = tmp_path / "data"
    cfg = make_config({**TINY, "data_root": str(data)})  # OCI_M: sources O, C, I
    got = training_crop_settings(cfg)
    assert (got.margin, got.size, got.jpeg_quality) == (0.25, 256, 95) and "not readable" in got.source
    _manifest(data / "O", "synthetic", {"img_size": 64})
    got = training_crop_settings(cfg)
    assert got.margin == 0.25 and "'synthetic', which does not crop detected faces" in got.source
    _manifest(data / "C", "casia", {"margin": 0.5, "img_size": 128, "jpeg_quality": 90})
    got = training_crop_settings(cfg)
    assert (got.margin, got.size, got.jpeg_quality) == (0.5, 128, 90) and got.source == f"{data / 'C'}/manifest.json"
    got = training_crop_settings(cfg, margin=0.1)
    assert (got.margin, got.size, got.jpeg_quality) == (0.1, 128, 90) and got.source.startswith("--margin")

    # a model trained on that data crops photos with margin 0.5 at 128 px, JPEG 90
    best_dir, model = _build_best(tmp_path / "m", data_root=str(data))
    predictor = Predictor(best_dir, device="cpu")
    assert predictor.crop.margin == 0.5
    img = photos / "one_face.jpg"
    (pred,) = predictor.predict([img])
    image = cv2.imread(str(img))
    found = faces.main_face(faces.create_detector("auto").detect(image))
    crop = faces.encode_jpeg(faces.crop_square(image, found.box, 0.5, 128).image, 90)
    np.testing.assert_allclose(pred.score, _torch_scores(model, [crop])[0], atol=1e-6)
