"""``anrl-ray predict``: P(spoof) of the faces in ordinary photos, or of ready face crops.

A photo goes through what the video converters (:mod:`anrl_ray.data.converters`) did to the
training frames: the same face detector (:func:`anrl_ray.data.faces.create_detector`), a square
crop around each face box enlarged by the margin (:func:`~anrl_ray.data.faces.crop_square`),
resized to the stored crop size and JPEG-encoded at the stored quality; the model's
:class:`~anrl_ray.data.transforms.FASTransform` then resizes it to the network input, as in
training. Margin, crop size and JPEG quality come from the manifests of the training data
(``data_root`` + sources of the checkpoint's config) when they are readable and were written by
a video converter; otherwise the converters' defaults (margin 0.25, 256 px, quality 95).
``detect=False`` scores each file as it is (a crop made beforehand).

Every face the detector finds (above its own score cut) is scored, largest first; face 0 is
the one the converters would have kept. :meth:`Prediction.line` is the printed format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from anrl_ray import LIVE
from anrl_ray.checkpoint import exported_threshold, load_model
from anrl_ray.data import faces
from anrl_ray.data.converters import FrameSettings
from anrl_ray.data.format import DatasetFormatError, parse_manifest
from anrl_ray.data.layouts import LAYOUTS
from anrl_ray.data.transforms import FASTransform, decode_bgr
from anrl_ray.errors import UserError
from anrl_ray.export import check_threshold
from anrl_ray.scoring import default_device, score_images

NO_FACE = "no face found"
ANNOTATED_SUFFIX = "_annotated.png"
_COLOURS = {"live": (40, 170, 40), "spoof": (30, 30, 220)}  # BGR


@dataclass(frozen=True)
class CropSettings:
    """How a detected face becomes a crop, and where these values come from."""

    margin: float
    size: int
    jpeg_quality: int
    source: str


@dataclass(frozen=True)
class Prediction:
    """One printed line: a face of an image, a whole image (no detection), or an image without a face."""

    path: str
    score: float | None = None  # P(spoof); None when no face was found
    decision: str = NO_FACE  # "live" | "spoof" | NO_FACE
    face: int | None = None  # index of the face in its image, 0 = largest; None without detection
    box: tuple[int, int, int, int] | None = None  # detector box x, y, w, h in image pixels

    def line(self) -> str:
        """The output line, tab-separated: ``path face x,y,w,h score decision`` (a detected face),
        ``path score decision`` (no detection) or ``path no face found``."""
        if self.score is None:
            return f"{self.path}\t{NO_FACE}"
        if self.box is None:
            return f"{self.path}\t{self.score:.6f}\t{self.decision}"
        return f"{self.path}\t{self.face}\t{','.join(map(str, self.box))}\t{self.score:.6f}\t{self.decision}"


def training_crop_settings(cfg, margin: float | None = None) -> CropSettings:
    """Crop margin / size / JPEG quality of the data ``cfg`` was trained on, else the converters' defaults.

    Args:
        cfg: the checkpoint's TrialConfig (``data_root`` and ``sources`` locate the manifests).
        margin: overrides the margin found (``--margin``).
    """
    default = FrameSettings()
    found, why = None, f"training data {cfg.data_root or '(none in config)'} not readable here"
    for domain in cfg.sources:
        folder = Path(cfg.data_root or ".") / domain
        try:
            manifest = parse_manifest(folder)
        except (DatasetFormatError, OSError):
            continue
        args = manifest.get("converter_args") or {}
        if manifest.get("converter") not in LAYOUTS or "margin" not in args:
            why = (f"{folder} was made by converter {manifest.get('converter')!r}, "
                   "which does not crop detected faces")
            continue
        found = CropSettings(float(args["margin"]), int(args.get("img_size", default.img_size)),
                             int(args.get("jpeg_quality", default.jpeg_quality)), f"{folder}/manifest.json")
        break
    if found is None:
        found = CropSettings(default.margin, default.img_size, default.jpeg_quality,
                             f"the video converters' defaults; {why}")
    if margin is not None:
        if not np.isfinite(margin) or margin < 0:
            raise UserError(f"--margin {margin}: must be a number >= 0 (crop side = face side * (1 + margin))")
        found = CropSettings(float(margin), found.size, found.jpeg_quality,
                             f"--margin; size and quality: {found.source}")
    return found


def check_images(images: Sequence[str | Path]) -> None:
    """Fail before any work on a missing, empty, or non-image file (the message names it)."""
    if not images:
        raise UserError("no image given: pass one or more JPEG/PNG files")
    for name in images:
        path = Path(name)
        if not path.exists():
            raise UserError(f"image {path} not found; check the path")
        if not path.is_file():
            raise UserError(f"image {path} is not a file; pass image files (JPEG/PNG), not folders")
        if path.stat().st_size == 0:
            raise UserError(f"image {path} is empty (0 bytes); pass a JPEG/PNG image file")
        if not cv2.haveImageReader(str(path)):
            raise UserError(f"image {path} is not a readable JPEG/PNG image (OpenCV knows no decoder for its content)")


def read_image(path: str | Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its BGR pixels; UserError naming the file if it cannot be decoded."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return data, decode_bgr(data)
    except (ValueError, OSError) as e:
        raise UserError(f"image {path} is not a readable JPEG/PNG image ({e})") from e


def annotated_paths(out_dir: str | Path, images: Sequence[str | Path]) -> list[Path]:
    """``DIR/<stem>_annotated.png`` per image (``<stem>_2_annotated.png``... for repeated stems); never an input."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--save-annotated {out_dir} is a file; pass a folder (created if missing)")
    inputs = {Path(p).resolve() for p in images}
    used: set[str] = set()
    paths = []
    for name in images:
        stem, k = Path(name).stem, 1
        while (candidate := f"{stem}{'' if k == 1 else f'_{k}'}{ANNOTATED_SUFFIX}") in used:
            k += 1
        used.add(candidate)
        if (out_dir / candidate).resolve() in inputs:
            raise UserError(f"--save-annotated {out_dir}: {out_dir / candidate} is one of the input images; "
                            "choose another folder")
        paths.append(out_dir / candidate)
    return paths


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """``text`` on a filled ``colour`` box whose bottom-left is (x, y) (moved inside the image if needed)."""
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = max(2, thick)
    x = min(max(x, 0), max(image.shape[1] - tw - 2 * pad, 0))
    y = max(y, th + base + 2 * pad)
    cv2.rectangle(image, (x, y - th - base - 2 * pad), (x + tw + 2 * pad, y), colour, -1)
    cv2.putText(image, text, (x + pad, y - base - pad), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def annotate(image_bgr: np.ndarray, predictions: Sequence[Prediction]) -> np.ndarray:
    """A copy of the image with each face box and ``live 0.12`` / ``spoof 0.93`` labels drawn on it.

    Without a box (no detection) the label goes in the top-left corner and the frame is outlined;
    an image without a face gets ``no face found``.
    """
    out = image_bgr.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 600)
    thick = max(1, round(scale * 2))
    for p in predictions:
        if p.score is None:
            _label(out, NO_FACE, 0, 0, (0, 140, 200), scale)
            continue
        colour = _COLOURS[p.decision]
        text = f"{p.decision} {p.score:.2f}"
        if p.box is None:
            cv2.rectangle(out, (0, 0), (w - 1, h - 1), colour, thick)
            _label(out, text, 0, 0, colour, scale)
        else:
            x, y, bw, bh = p.box
            cv2.rectangle(out, (x, y), (x + bw, y + bh), colour, thick)
            _label(out, text, x, y, colour, scale)
    return out


class Predictor:
    """A checkpoint ready to score photos or crops: model, threshold, crop settings, detector.

    Args:
        checkpoint: ``best/`` folder, ``checkpoint_epochNNNN/`` folder or ``checkpoint.pt``.
        threshold: P(spoof) cut (default: the one exported beside the checkpoint).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        margin: crop margin (default: the training data's, else 0.25).
        detector: ``auto`` (yuface, else Haar), ``yuface`` or ``haar``.

    Raises:
        UserError: unreadable checkpoint, bad threshold or margin, or no threshold anywhere.
    """

    def __init__(self, checkpoint: str | Path, *, threshold: float | None = None, device: str = "auto",
                 margin: float | None = None, detector: str = "auto") -> None:
        check_threshold(threshold)
        try:
            model, self.cfg, _ = load_model(checkpoint)
        except UserError:
            raise
        except Exception as e:  # torch.load / safetensors / JSON on a damaged file: name it, no traceback
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"checkpoint {checkpoint} cannot be read ({type(e).__name__}: {reason}); pass an intact "
                            "best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt") from e
        self.model = model.to(default_device(device))
        if threshold is None:
            threshold, _ = exported_threshold(checkpoint)
            if threshold is None:
                raise UserError(
                    f"{checkpoint}: no decision threshold found (best/ metrics.json 'threshold' or a checkpoint "
                    f"folder's metrics.json); re-export with `anrl-ray best EXP` or pass --threshold T"
                )
        self.threshold = float(threshold)
        self.crop = training_crop_settings(self.cfg, margin)
        self.detector_name = detector
        self._detector: faces.FaceDetector | None = None
        self._tf = FASTransform(self.cfg.img_size, self.cfg.in_channels, augment=False)

    @property
    def detector(self) -> faces.FaceDetector:
        if self._detector is None:
            self._detector = faces.create_detector(self.detector_name)
        return self._detector

    def face_crops(self, image_bgr: np.ndarray) -> list[tuple[faces.Face, bytes]]:
        """Each detected face (largest first) and its crop encoded as the converters store it."""
        found = sorted(self.detector.detect(image_bgr), key=lambda f: (f.area, f.score), reverse=True)
        c = self.crop
        return [(f, faces.encode_jpeg(faces.crop_square(image_bgr, f.box, c.margin, c.size).image, c.jpeg_quality))
                for f in found]

    def scores(self, encoded: Sequence[bytes], batch_size: int = 32) -> np.ndarray:
        """P(spoof) of encoded crops, as training's FASTransform feeds them (no augmentation)."""
        out = [np.zeros(0, np.float32)]
        for start in range(0, len(encoded), batch_size):
            x = np.stack([self._tf(b, None, LIVE)[0] for b in encoded[start : start + batch_size]])
            out.append(score_images(self.model, x)[0])  # (B, C, H, W) -> P(spoof) (B,)
        return np.concatenate(out)

    def decision(self, score: float) -> str:
        return "spoof" if score >= self.threshold else "live"

    def predict(self, images: Sequence[str | Path], *, detect: bool = True, main_face_only: bool = False,
                annotate_dir: str | Path | None = None, batch_size: int = 32) -> Iterator[Prediction]:
        """Predictions image by image (crops of several images are scored together, ``batch_size`` at a time).

        Args:
            detect: find and crop faces; False scores each file as a ready crop.
            main_face_only: keep only the largest face of each image, as the converters do.
            annotate_dir: write ``<stem>_annotated.png`` per image there (created).
        """
        if batch_size < 1:
            raise UserError(f"--batch-size {batch_size}: must be >= 1")
        check_images(images)
        out_paths = annotated_paths(annotate_dir, images) if annotate_dir is not None else None
        if out_paths is not None:
            Path(annotate_dir).mkdir(parents=True, exist_ok=True)
        pending: list[tuple[int, np.ndarray | None, list[tuple[int, int, int, int]], list[bytes]]] = []
        for i, name in enumerate(images):
            data, image = read_image(name)
            if detect:
                found = self.face_crops(image)[: 1 if main_face_only else None]
                boxes = [tuple(int(round(v)) for v in f.box) for f, _ in found]
                crops = [c for _, c in found]
            else:
                boxes, crops = [], [data]
            pending.append((i, image if out_paths is not None else None, boxes, crops))
            if sum(len(p[3]) for p in pending) >= batch_size or i == len(images) - 1:
                yield from self._flush(images, pending, detect, out_paths, batch_size)
                pending = []

    def _flush(self, images, pending, detect, out_paths, batch_size) -> Iterator[Prediction]:
        scores = iter(self.scores([c for p in pending for c in p[3]], batch_size).tolist())
        for i, image, boxes, crops in pending:
            path = str(images[i])
            if not crops:
                preds = [Prediction(path)]
            elif not detect:
                s = next(scores)
                preds = [Prediction(path, s, self.decision(s))]
            else:
                preds = []
                for k, box in enumerate(boxes):
                    s = next(scores)
                    preds.append(Prediction(path, s, self.decision(s), k, box))
            if out_paths is not None:
                target = out_paths[i]
                if not cv2.imwrite(str(target), annotate(image, preds)):
                    raise UserError(f"--save-annotated: could not write {target}; check the folder is writable")
            yield from preds


def predict_images(
    checkpoint: str | Path, images: Sequence[str | Path], *, threshold: float | None = None, batch_size: int = 32,
    device: str = "auto", detect: bool = True, main_face_only: bool = False, margin: float | None = None,
    detector: str = "auto", annotate_dir: str | Path | None = None,
) -> list[Prediction]:
    """All predictions of ``images`` with ``checkpoint`` (see :class:`Predictor` and :meth:`Predictor.predict`)."""
    predictor = Predictor(checkpoint, threshold=threshold, device=device, margin=margin, detector=detector)
    return list(predictor.predict(images, detect=detect, main_face_only=main_face_only,
                                  annotate_dir=annotate_dir, batch_size=batch_size))
