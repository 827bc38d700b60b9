"""Import the reference implementation's (Tencent/TFace) frame lists (+ LMDB) into the Parquet format.

The reference (Tencent/TFace, ``security/tasks/Face-Anti-Spoofing/ANRL/datasets/DG_dataset.py``
with ``security/common/utils/face_utils.py``) reads its data as follows, and this importer
reads the same inputs the same way:

* A list file has one frame per line, fields separated by spaces::

      <image path> <label> [<x> <y> <w> <h> [<x1> <y1> ... <x5> <y5>]]

  fields 2-5 a face box, 6-15 five landmarks (both optional here; the reference only reads
  them when face cropping is switched on).
* Label: ``0`` = live; anything else = spoof (the reference keeps the depth map only for
  label 0 and zeroes it otherwise; its metrics treat 1 as the attack class). That is this
  package's convention too, so labels pass through unchanged; ``--live-label 1`` reads lists
  written the other way round (e.g. SSDG's, where 1 = real).
* Images: with ``--lmdb DIR`` the key is the image path exactly as written in the list
  (UTF-8) and the value the encoded image; otherwise the path is a file (relative paths are
  taken under ``--image-root``).
* Depth: the key (or file) of a frame's depth map is its image path with the dataset's
  folder name suffixed ``_depth``: the first of ``replayattack``, ``CASIA_database``,
  ``MSU-MFSD``, ``Oulu_NPU`` found in the path has every occurrence replaced by
  ``replayattack_depth`` etc. ``--depth-replace OLD=NEW`` substitutes another rule. Depth maps
  are decoded as 8-bit grayscale, have the image's geometry, and are cut with the same box.
  Spoof frames get no depth (the reference's all-zero target is implied by the label).
* Cropping (``--crop``): ``none`` (what the published configs do: their switch is spelled
  ``rcrop_face_from_5points`` and so never read), ``bbox`` (fields 2-5) or ``landmarks``
  (fields 6-15). The box is the reference's: a square of the larger box side anchored at the
  box's top-left corner, grown by ``side * margin / 2`` on every side (``--margin``, the
  configs use 2), then clipped to the image, so it can end up non-square; it is then resized
  to ``--img-size`` squared as the reference's Resize does.

Frames are grouped into videos by their folder, as the reference's evaluation does. The
video, subject and attack type are read from the folder's path with the raw dataset's naming
(:mod:`anrl_ray.data.layouts`, chosen by ``--domain`` O/C/I/M or ``--layout``); the split
comes from ``--split`` (one per list) or else from that path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import cv2
import numpy as np

from anrl_ray import LIVE, SPOOF
from anrl_ray.data import faces
from anrl_ray.data.format import DatasetWriter, read_manifest
from anrl_ray.data.layouts import LAYOUT_OF_DOMAIN, LAYOUTS, NameMismatch, VideoMeta
from anrl_ray.data.output import check_dataset_name, prepare_output
from anrl_ray.errors import UserError

# The reference's depth-path rule: (token, replacement), the first token found wins.
REFERENCE_DEPTH_RULES = (
    ("replayattack", "replayattack_depth"),
    ("CASIA_database", "CASIA_database_depth"),
    ("MSU-MFSD", "MSU-MFSD_depth"),
    ("Oulu_NPU", "Oulu_NPU_depth"),
)
MISSING_DEPTH = ("fail", "template", "none")
CROPS = ("none", "bbox", "landmarks")


@dataclass(frozen=True)
class ListEntry:
    """One parsed line of a reference list."""

    list_path: str
    line_no: int
    image_path: str
    label: int  # as written in the list
    box: tuple[float, float, float, float] | None  # x, y, w, h
    landmarks: np.ndarray | None  # (5, 2)

    @property
    def where(self) -> str:
        return f"{self.list_path}:{self.line_no}"


def parse_list_line(line: str, list_path: str, line_no: int) -> ListEntry | None:
    """A list line -> ListEntry; None for blank/comment lines; ValueError naming the problem."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    if len(fields) < 2:
        raise ValueError("expected '<image path> <label> [x y w h [10 landmark coordinates]]'")
    try:
        label = int(fields[1])
    except ValueError:
        raise ValueError(f"label {fields[1]!r} is not an integer") from None
    try:
        numbers = [float(v) for v in fields[2:]]
    except ValueError as e:
        raise ValueError(f"box/landmark fields must be numbers ({e})") from None
    box = tuple(numbers[0:4]) if len(numbers) >= 4 else None
    landmarks = np.array(numbers[4:14], np.float64).reshape(5, 2) if len(numbers) >= 14 else None
    return ListEntry(list_path, line_no, fields[0], label, box, landmarks)


def reference_depth_key(image_path: str, rules: tuple[tuple[str, str], ...] = REFERENCE_DEPTH_RULES) -> str | None:
    """The depth map's key/path for an image path (None when no rule applies)."""
    for token, replacement in rules:
        if token in image_path:
            return image_path.replace(token, replacement)
    return None


def reference_face_box(
    box: tuple[float, float, float, float], margin: float, image_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The reference's crop window (x1, y1, x2, y2) for a box: square of the larger side at
    the box's top-left corner, grown by ``int(side * margin / 2)`` per side, clipped."""
    x, y, w, h = (int(v) for v in box)
    side = max(w, h)
    grow = int(side * margin / 2)
    x1, y1, x2, y2 = x - grow, y - grow, x + side + grow, y + side + grow
    return max(0, x1), max(0, y1), min(image_hw[1], x2), min(image_hw[0], y2)


def landmark_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The (x, y, w, h) extent of integer-truncated landmarks, as the reference computes it."""
    pts = np.trunc(np.asarray(landmarks, np.float64))
    x, y = pts.min(axis=0)
    return float(x), float(y), float(pts[:, 0].max() - x), float(pts[:, 1].max() - y)


def meta_from_path(image_path: str, layout_name: str | None) -> VideoMeta | None:
    """Video metadata from a frame's folder using a raw dataset's naming (None if it fits none).

    The folder path may carry any prefix; trailing 1-5 components are tried, shortest first.
    """
    if layout_name is None:
        return None
    parse = LAYOUTS[layout_name].parse
    parts = PurePosixPath(image_path.replace("\\", "/")).parent.parts
    for k in range(1, min(5, len(parts)) + 1):
        try:
            return parse(PurePosixPath(*parts[-k:]))
        except NameMismatch:
            continue
    return None


def resolve_layout(choice: str, domain: str) -> str | None:
    """The raw-dataset naming to read paths with: ``auto`` = by domain O/C/I/M, ``none`` = None."""
    if choice == "auto":
        return LAYOUT_OF_DOMAIN[domain].name if domain in LAYOUT_OF_DOMAIN else None
    if choice == "none":
        return None
    if choice not in LAYOUTS:
        raise UserError(f"--layout {choice!r}: choose auto, none or one of {', '.join(LAYOUTS)}")
    return choice


def _frame_number(image_path: str, fallback: int) -> int:
    numbers = re.findall(r"\d+", PurePosixPath(image_path).stem)
    return int(numbers[-1]) if numbers and len(numbers[-1]) < 10 else fallback


def _image_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


class _Store:
    """Reads encoded images by key: from an LMDB environment or from files."""

    def __init__(self, lmdb_dir: Path | None, image_root: Path | None) -> None:
        self.image_root = image_root
        self._env = self._txn = None
        if lmdb_dir is not None:
            import lmdb

            if not Path(lmdb_dir).exists():
                raise UserError(f"--lmdb {lmdb_dir} does not exist; expected the reference's LMDB folder")
            try:
                self._env = lmdb.open(str(lmdb_dir), readonly=True, lock=False, readahead=False,
                                      subdir=Path(lmdb_dir).is_dir(), max_readers=8)
            except lmdb.Error as e:
                raise UserError(f"--lmdb {lmdb_dir} is not an LMDB database ({e})") from e
            self._txn = self._env.begin(write=False)

    @property
    def name(self) -> str:
        return "the LMDB" if self._txn is not None else "the file system"

    def get(self, key: str) -> bytes | None:
        if self._txn is not None:
            value = self._txn.get(key.encode("utf-8"))
            return None if value is None else bytes(value)
        path = Path(key)
        if not path.is_absolute() and self.image_root is not None:
            path = self.image_root / path
        try:
            return path.read_bytes()
        except OSError:
            return None

    def close(self) -> None:
        if self._env is not None:
            self._txn.abort()
            self._env.close()


@dataclass(frozen=True)
class ImportSettings:
    img_size: int = 256
    crop: str = "none"
    margin: float = 2.0
    live_label: int = 0
    depth_rules: tuple[tuple[str, str], ...] = REFERENCE_DEPTH_RULES
    missing_depth: str = "fail"
    layout: str | None = None  # raw-dataset naming used to read video/subject/attack from paths
    default_attack: str | None = None  # attack type for spoof frames whose path says nothing
    detector: str = "auto"  # only for --missing-depth template without box/landmarks
    jpeg_quality: int = 95

    def needs_detector(self, entry: ListEntry) -> bool:
        """Whether placing a template for ``entry`` needs a face detector."""
        return self.missing_depth == "template" and entry.box is None and entry.landmarks is None


def _read_entries(
    list_paths: list[Path], splits: list[str | None]
) -> Iterator[tuple[ListEntry | None, str | None, tuple[str, str]]]:
    """(entry, split, ("", "")) or (None, split, (where, error)) for every non-blank line."""
    for list_path, split in zip(list_paths, splits):
        with open(list_path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                try:
                    entry = parse_list_line(line, str(list_path), line_no)
                except ValueError as e:
                    yield None, split, (f"{list_path}:{line_no}", str(e))
                    continue
                if entry is not None:
                    yield entry, split, ("", "")


def import_lists(
    list_paths: list[Path],
    splits: list[str | None],
    out_dir: Path,
    domain: str,
    settings: ImportSettings,
    *,
    lmdb_dir: Path | None = None,
    image_root: Path | None = None,
    overwrite: bool = False,
) -> dict:
    """Import reference lists into ``out_dir`` (the domain's folder); returns its manifest.

    Args:
        list_paths: the reference's data lists.
        splits: the split of each list, or None to read it from the frame's path.
        out_dir: the dataset folder to write, ``OUT/<domain>``.
        domain: domain name stored in the rows.
        settings: labels, depth, crop and encoding rules.
        lmdb_dir: the reference's LMDB (keys = list paths); None reads image files.
        image_root: the folder relative image paths are under (without ``lmdb_dir``).
        overwrite: replace ``out_dir`` if it is a dataset folder (never another folder).

    Raises:
        UserError: a bad name, list, LMDB or output folder (the message says which).
    """
    out_dir = Path(out_dir)
    check_dataset_name(domain, "--domain")
    prepare_output(out_dir, overwrite=overwrite)
    if len(splits) != len(list_paths):
        raise UserError(f"{len(splits)} splits for {len(list_paths)} lists; give one split (or None) per list")
    for p in list_paths:
        if not Path(p).is_file():
            raise UserError(f"--list {p} is not a file; expected a reference data list ('<image path> <label> ...' per line)")
    store = _Store(lmdb_dir, image_root)
    detector = None
    args = dict(
        lists=[str(Path(p).resolve()) for p in list_paths],
        splits=list(splits),
        lmdb=str(Path(lmdb_dir).resolve()) if lmdb_dir else None,
        image_root=str(Path(image_root).resolve()) if image_root else None,
        img_size=settings.img_size,
        crop=settings.crop,
        margin=settings.margin,
        live_label=settings.live_label,
        depth_rules=[list(r) for r in settings.depth_rules],
        missing_depth=settings.missing_depth
        + (f" (template-v{faces.TEMPLATE_VERSION})" if settings.missing_depth == "template" else ""),
        layout=settings.layout,
        default_attack=settings.default_attack,
        jpeg_quality=settings.jpeg_quality,
    )
    seen: dict[str, str] = {}  # image path -> where it was first listed
    videos: dict[str, tuple[int, str]] = {}  # video id -> (label, split)
    frame_counter: dict[str, int] = {}
    try:
        with DatasetWriter(out_dir, domain=domain, converter="tface", converter_args=args, overwrite=overwrite) as writer:
            for entry, split, error in _read_entries([Path(p) for p in list_paths], splits):
                if entry is None:
                    writer.fail(*error)
                    continue
                if entry.image_path in seen:
                    writer.fail(entry.where, f"{entry.image_path} is already listed at {seen[entry.image_path]}; skipped")
                    continue
                seen[entry.image_path] = entry.where
                if settings.needs_detector(entry) and detector is None:
                    detector = faces.create_detector(settings.detector)
                row, reason = _convert_entry(entry, split, settings, store, detector, frame_counter)
                if row is None:
                    writer.fail(entry.where, reason)
                    continue
                previous = videos.setdefault(row["video_id"], (row["label"], row["split"]))
                if previous != (row["label"], row["split"]):
                    writer.fail(
                        entry.where,
                        f"video {row['video_id']!r} is already {('live', 'spoof')[previous[0]]}/{previous[1]}, this frame "
                        f"says {('live', 'spoof')[row['label']]}/{row['split']}",
                    )
                    continue
                writer.add(**row)
    finally:
        store.close()
    return read_manifest(out_dir)


def _convert_entry(
    entry: ListEntry,
    split: str | None,
    s: ImportSettings,
    store: _Store,
    detector: faces.FaceDetector | None,
    frame_counter: dict[str, int],
) -> tuple[dict | None, str]:
    """One list entry -> (row, "") or (None, reason)."""
    label = LIVE if entry.label == s.live_label else SPOOF
    meta = meta_from_path(entry.image_path, s.layout)
    folder = str(PurePosixPath(entry.image_path).parent)
    if meta is not None:
        if (meta.label == LIVE) != (label == LIVE):
            return None, (
                f"label {entry.label} ({('live', 'spoof')[label]}) contradicts the video name {meta.video_id!r} "
                f"({meta.attack_type}); if the list uses 1 = live, pass --live-label 1"
            )
        video_id, subject, attack = meta.video_id, meta.subject_id, meta.attack_type
        split = split or meta.split
    else:
        video_id, subject = folder, folder
        attack = "live" if label == LIVE else s.default_attack
        if attack is None:
            return None, (
                f"spoof frame whose folder {folder!r} fits no {s.layout or 'known'} naming, so its attack type is "
                "unknown; pass --default-attack or --layout"
            )
    if split is None:
        return None, "split unknown (not in the path); pass --split for this list"

    data = store.get(entry.image_path)
    if data is None:
        return None, f"image {entry.image_path!r} not found in {store.name}"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None, f"image {entry.image_path!r} cannot be decoded"

    depth = None
    if label == LIVE:
        key = reference_depth_key(entry.image_path, s.depth_rules)
        depth = faces.decode_gray_or_none(store.get(key)) if key is not None else None
        if depth is not None and depth.shape[:2] != image.shape[:2]:
            depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)

    window = None
    if s.crop == "bbox" or s.crop == "landmarks":
        if s.crop == "bbox" and entry.box is None:
            return None, "--crop bbox but the line has no x y w h fields"
        if s.crop == "landmarks" and entry.landmarks is None:
            return None, "--crop landmarks but the line has no 10 landmark fields"
        box = entry.box if s.crop == "bbox" else landmark_box(entry.landmarks)
        x1, y1, x2, y2 = reference_face_box(box, s.margin, image.shape[:2])
        if x1 >= x2 or y1 >= y2:
            return None, f"empty face box {box} in a {image.shape[1]}x{image.shape[0]} image"
        window = (x1, y1, x2, y2)
        image = image[y1:y2, x1:x2]
        if depth is not None:
            depth = depth[y1:y2, x1:x2]

    size = s.img_size
    passthrough = window is None and image.shape[:2] == (size, size) and _image_format(data) is not None
    image_bytes = data if passthrough else faces.encode_jpeg(faces.resize_square(image, size), s.jpeg_quality)
    image_format = _image_format(data) if passthrough else "jpeg"

    if label == LIVE:
        if depth is not None:
            depth = faces.resize_square(depth, size)
        elif s.missing_depth == "template":
            depth = _template(entry, image, window, size, detector)
            if depth is None:
                return None, "no depth map, and no face box, landmarks or detected face to place the template"
        elif s.missing_depth == "fail":
            key = reference_depth_key(entry.image_path, s.depth_rules)
            return None, (
                f"no readable depth map {key!r} for this live frame" if key else
                "no depth rule applies to this path (pass --depth-replace OLD=NEW)"
            ) + "; --missing-depth template|none to keep it"

    frame_index = _frame_number(entry.image_path, frame_counter.get(video_id, 0))
    frame_counter[video_id] = frame_counter.get(video_id, 0) + 1
    return dict(
        image=image_bytes,
        image_format=image_format,
        depth=None if depth is None else faces.encode_png(depth),
        label=label,
        attack_type=attack,
        subject_id=subject,
        video_id=video_id,
        frame_index=frame_index,
        split=split,
        source_path=entry.image_path,
    ), ""


def _template(
    entry: ListEntry, cropped: np.ndarray, window: tuple[int, int, int, int] | None, size: int,
    detector: faces.FaceDetector | None,
) -> np.ndarray | None:
    """The procedural depth template placed with the list's landmarks/box, or a detected face."""
    h, w = cropped.shape[:2]
    ox, oy = (window[0], window[1]) if window else (0, 0)
    scale = np.array([size / w, size / h])
    if entry.landmarks is not None:
        return faces.template_depth(size, landmarks=(entry.landmarks - [ox, oy]) * scale)
    if entry.box is not None:
        x, y, bw, bh = entry.box
        return faces.template_depth(size, box=((x - ox) * scale[0], (y - oy) * scale[1], bw * scale[0], bh * scale[1]))
    face = faces.main_face(detector.detect(cropped)) if detector is not None else None
    if face is None:
        return None
    lm = None if face.landmarks is None else face.landmarks * scale
    x, y, bw, bh = face.box
    return faces.template_depth(size, landmarks=lm, box=(x * scale[0], y * scale[1], bw * scale[0], bh * scale[1]))
