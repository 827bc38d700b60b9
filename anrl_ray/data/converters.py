"""``anrl-ray convert {oulu,casia,replay,msu}``: raw FAS video datasets -> the Parquet format.

Each converter walks the dataset's published layout, decodes every video with OpenCV,
samples N frames evenly (the centres of N equal segments), detects the face, cuts a square
crop with a margin, resizes it, encodes it as JPEG and, for live videos, attaches a depth
target (the procedural template of :mod:`anrl_ray.data.faces`, or the user's renders from
``--depth-dir``). Output goes through :class:`anrl_ray.data.format.DatasetWriter`, so an
interrupted conversion leaves nothing that looks complete and never destroys an existing
dataset. Anything that cannot be converted (a file name that fits no pattern, an unreadable
video, a frame without a face) is listed in ``conversion_report.json``.

Layouts followed (from the datasets' documentation and the loaders of public code that
reads the original releases: SSDG's ``data_label/generate_label.py``, Idiap's
``bob.db.casia_fasd`` / ``bob.db.replay``, Tencent/TFace ``DG_dataset.py``):

OULU-NPU  ``ROOT/{Train_files,Dev_files,Test_files}/P_S_UU_F.avi`` -- Phone 1-6,
    Session 1-3, User 01-55, File (access type) 1 = live, 2-3 = print, 4-5 = display
    (replay). The split is the folder. The ``.txt`` eye-position files beside the videos
    are ignored.
CASIA-FASD  ``ROOT/{train_release,test_release}/<subject>/<video>.avi`` -- 1, 2, HR_1 live;
    3, 4, HR_2 warped printed photo (``print``); 5, 6, HR_3 printed photo with cut eyes
    (``cut``); 7, 8, HR_4 video replay (``replay``) (bob.db.casia_fasd's mapping). Subject
    folders restart at 1 in each release, so subjects are named ``train_release/7``. There
    is no dev split: the last ``round(dev_fraction * n)`` train subjects in numeric order
    become dev (0.25 of the 20 gives subjects 16-20, bob's "grandtest" dev set); the list is
    recorded in the manifest's ``converter_args``.
Replay-Attack (Idiap)  ``ROOT/{train,devel,test}/real/client001_session01_webcam_authenticate_
    {adverse,controlled}_N.mov`` and ``ROOT/{train,devel,test}/attack/{fixed,hand}/attack_
    {print,highdef,mobile}_client001_session01_{highdef,mobile}_{photo,video}_{adverse,
    controlled}.mov``: ``print`` -> print; ``highdef``/``mobile`` (a photo or video shown on a
    screen) -> replay. ``devel`` -> dev. ``enroll/`` and ``face-locations/`` are not read.
    Fixed and hand-held attacks share file names, so video ids keep the folder.
MSU-MFSD  ``ROOT/scene01/real/real_client001_{android,laptop}_SD_scene01.{mp4,mov}`` and
    ``ROOT/scene01/attack/attack_client001_{android,laptop}_SD_{ipad_video,iphone_video,
    printed_photo}_scene01.{mp4,mov}``; ``ROOT/train_sub_list.txt`` / ``ROOT/test_sub_list.txt``
    list the client numbers of each split. ``printed_photo`` -> print, ``*_video`` -> replay.
    Dev = the last ``round(dev_fraction * n)`` train clients in numeric order (recorded).

Video ids are the video's path relative to ROOT without its extension (the reference code
groups frames into videos the same way: by their folder).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from anrl_ray import LIVE, SPOOF
from anrl_ray.data import faces
from anrl_ray.data.format import DatasetWriter, read_manifest
from anrl_ray.errors import UserError

VIDEO_EXTENSIONS = (".avi", ".mov", ".mp4", ".m4v", ".mkv", ".wmv", ".mpg", ".mpeg", ".3gp", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class NameMismatch(ValueError):
    """A path that does not fit the dataset's naming pattern (the message says why)."""


@dataclass(frozen=True)
class VideoMeta:
    """What a dataset's naming tells about one video."""

    rel_path: str  # path relative to the dataset root, POSIX separators
    video_id: str  # rel_path without the video extension
    subject_id: str
    attack_type: str  # one of format.ATTACK_TYPES
    split: str | None  # "train" | "dev" | "test"; None when a subject list decides (MSU)

    @property
    def label(self) -> int:
        return LIVE if self.attack_type == "live" else SPOOF


def _video_id(rel: PurePosixPath) -> str:
    return str(rel.with_suffix("")) if rel.suffix.lower() in VIDEO_EXTENSIONS else str(rel)


def _stem(rel: PurePosixPath) -> str:
    return rel.stem if rel.suffix.lower() in VIDEO_EXTENSIONS else rel.name


# ----------------------------------------------------------------------------------------
# Naming patterns, one parser per dataset. A parser takes a path relative to the dataset
# root (the last part is a video file, or a folder of its frames) and returns VideoMeta or
# raises NameMismatch. tface.py reuses them on the folders of the reference's frame lists.

_OULU_SPLITS = {"Train_files": "train", "Dev_files": "dev", "Test_files": "test"}
_OULU_NAME = re.compile(r"^([1-6])_([1-3])_(\d{2})_([1-5])$")
_OULU_ATTACK = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}


def parse_oulu(rel: PurePosixPath) -> VideoMeta:
    """``{Train,Dev,Test}_files/Phone_Session_User_File.avi`` (File 1 live, 2-3 print, 4-5 replay)."""
    if len(rel.parts) != 2 or rel.parts[0] not in _OULU_SPLITS:
        raise NameMismatch(f"expected {'|'.join(_OULU_SPLITS)}/P_S_UU_F.avi, got {rel}")
    m = _OULU_NAME.match(_stem(rel))
    if not m:
        raise NameMismatch("name is not Phone(1-6)_Session(1-3)_User(2 digits)_File(1-5), e.g. 1_1_01_1.avi")
    return VideoMeta(str(rel), _video_id(rel), m.group(3), _OULU_ATTACK[int(m.group(4))], _OULU_SPLITS[rel.parts[0]])


_CASIA_SPLITS = {"train_release": "train", "test_release": "test"}
_CASIA_ATTACK = {
    **dict.fromkeys(("1", "2", "HR_1"), "live"),
    **dict.fromkeys(("3", "4", "HR_2"), "print"),  # warped printed photo
    **dict.fromkeys(("5", "6", "HR_3"), "cut"),  # printed photo with the eyes cut out
    **dict.fromkeys(("7", "8", "HR_4"), "replay"),  # video on a screen
}


def parse_casia(rel: PurePosixPath) -> VideoMeta:
    """``{train,test}_release/<subject>/<1-8|HR_1-HR_4>.avi``; split "train" before the dev carve."""
    if len(rel.parts) != 3 or rel.parts[0] not in _CASIA_SPLITS:
        raise NameMismatch(f"expected train_release|test_release/<subject>/<video>.avi, got {rel}")
    if not rel.parts[1].isdigit():
        raise NameMismatch(f"subject folder {rel.parts[1]!r} is not a number")
    attack = _CASIA_ATTACK.get(_stem(rel))
    if attack is None:
        raise NameMismatch(f"video name {_stem(rel)!r} is not one of {sorted(_CASIA_ATTACK)}")
    subject = f"{rel.parts[0]}/{int(rel.parts[1])}"
    return VideoMeta(str(rel), _video_id(rel), subject, attack, _CASIA_SPLITS[rel.parts[0]])


_REPLAY_SPLITS = {"train": "train", "devel": "dev", "test": "test"}
_REPLAY_REAL = re.compile(r"^client(\d+)_session(\d+)_webcam_authenticate_(adverse|controlled)_(\d+)$")
_REPLAY_ATTACK = re.compile(
    r"^attack_(print|highdef|mobile)_client(\d+)_session(\d+)_(highdef|mobile)_(photo|video)_(adverse|controlled)$"
)


def parse_replay(rel: PurePosixPath) -> VideoMeta:
    """``{train,devel,test}/real/client...mov`` or ``.../attack/{fixed,hand}/attack_<medium>_client...mov``."""
    parts = rel.parts
    if not parts or parts[0] not in _REPLAY_SPLITS:
        raise NameMismatch(f"expected train|devel|test/..., got {rel}")
    stem = _stem(rel)
    if len(parts) == 3 and parts[1] == "real":
        m = _REPLAY_REAL.match(stem)
        if not m:
            raise NameMismatch("real video name is not client<N>_session<N>_webcam_authenticate_<adverse|controlled>_<N>")
        return VideoMeta(str(rel), _video_id(rel), m.group(1), "live", _REPLAY_SPLITS[parts[0]])
    if len(parts) == 4 and parts[1] == "attack" and parts[2] in ("fixed", "hand"):
        m = _REPLAY_ATTACK.match(stem)
        if not m:
            raise NameMismatch(
                "attack video name is not attack_<print|highdef|mobile>_client<N>_session<N>_"
                "<highdef|mobile>_<photo|video>_<adverse|controlled>"
            )
        attack = "print" if m.group(1) == "print" else "replay"
        return VideoMeta(str(rel), _video_id(rel), m.group(2), attack, _REPLAY_SPLITS[parts[0]])
    raise NameMismatch(f"expected <split>/real/<name> or <split>/attack/{{fixed,hand}}/<name>, got {rel}")


_MSU_REAL = re.compile(r"^real_client(\d+)_(android|laptop)_(SD|HD)_(scene\d+)$")
_MSU_ATTACK = re.compile(r"^attack_client(\d+)_(android|laptop)_(SD|HD)_(ipad_video|iphone_video|printed_photo)_(scene\d+)$")


def parse_msu(rel: PurePosixPath) -> VideoMeta:
    """``scene01/{real,attack}/...``; split None (decided by train/test_sub_list.txt)."""
    parts = rel.parts
    if len(parts) != 3 or not parts[0].startswith("scene") or parts[1] not in ("real", "attack"):
        raise NameMismatch(f"expected scene01/real/<name> or scene01/attack/<name>, got {rel}")
    stem = _stem(rel)
    if parts[1] == "real":
        m = _MSU_REAL.match(stem)
        if not m:
            raise NameMismatch("real video name is not real_client<NNN>_<android|laptop>_SD_scene01")
        return VideoMeta(str(rel), _video_id(rel), f"{int(m.group(1)):03d}", "live", None)
    m = _MSU_ATTACK.match(stem)
    if not m:
        raise NameMismatch(
            "attack video name is not attack_client<NNN>_<android|laptop>_SD_<ipad_video|iphone_video|printed_photo>_scene01"
        )
    attack = "print" if m.group(4) == "printed_photo" else "replay"
    return VideoMeta(str(rel), _video_id(rel), f"{int(m.group(1)):03d}", attack, None)


@dataclass(frozen=True)
class Layout:
    """One raw dataset: where its videos live and how their names read."""

    name: str
    domain: str
    title: str
    split_dirs: tuple[str, ...]  # folders under ROOT that hold the videos
    parse: Callable[[PurePosixPath], VideoMeta]
    expected: str  # the layout in one line, for error messages


LAYOUTS: dict[str, Layout] = {
    "oulu": Layout(
        "oulu", "O", "OULU-NPU", ("Train_files", "Dev_files", "Test_files"), parse_oulu,
        "ROOT/{Train_files,Dev_files,Test_files}/<Phone>_<Session>_<User>_<File>.avi, e.g. Train_files/1_1_01_1.avi",
    ),
    "casia": Layout(
        "casia", "C", "CASIA-FASD", ("train_release", "test_release"), parse_casia,
        "ROOT/{train_release,test_release}/<subject>/{1..8,HR_1..HR_4}.avi, e.g. train_release/1/HR_1.avi",
    ),
    "replay": Layout(
        "replay", "I", "Idiap Replay-Attack", ("train", "devel", "test"), parse_replay,
        "ROOT/{train,devel,test}/real/client001_session01_webcam_authenticate_adverse_1.mov and "
        "ROOT/{train,devel,test}/attack/{fixed,hand}/attack_highdef_client001_session01_highdef_photo_adverse.mov",
    ),
    "msu": Layout(
        "msu", "M", "MSU-MFSD", ("scene01",), parse_msu,
        "ROOT/scene01/{real,attack}/real_client001_android_SD_scene01.mp4 ... plus "
        "ROOT/train_sub_list.txt and ROOT/test_sub_list.txt",
    ),
}
LAYOUT_OF_DOMAIN = {layout.domain: layout for layout in LAYOUTS.values()}


def scan(layout: Layout, root: Path) -> tuple[list[VideoMeta], list[tuple[str, str]]]:
    """Videos under ``root`` that fit ``layout``, and (path, reason) for those that do not.

    Only files with a video extension inside the layout's split folders are considered;
    annotation files next to them (``.txt``, ``.face``) are not videos and are skipped.
    """
    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder; expected the {layout.title} layout: {layout.expected}")
    present = [d for d in layout.split_dirs if (root / d).is_dir()]
    if not present:
        raise UserError(
            f"--root {root} contains none of {', '.join(layout.split_dirs)}; expected the {layout.title} layout: "
            f"{layout.expected}"
        )
    metas, bad = [], []
    for d in present:
        for path in sorted((root / d).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            rel = PurePosixPath(path.relative_to(root).as_posix())
            try:
                metas.append(layout.parse(rel))
            except NameMismatch as e:
                bad.append((str(rel), f"file name fits no {layout.title} pattern: {e}"))
    if not metas:
        raise UserError(
            f"no {layout.title} video found under {root} ({len(bad)} video files with other names, e.g. "
            f"{[b[0] for b in bad[:3]]}); expected: {layout.expected}"
        )
    return metas, bad


def _subject_number(subject: str) -> int:
    return int(re.findall(r"\d+", subject)[-1])


def carve_dev_subjects(subjects: Iterable[str], fraction: float) -> list[str]:
    """The last ``round(fraction * n)`` subjects in numeric order (at least 1, leaving 1 for train)."""
    ordered = sorted(set(subjects), key=_subject_number)
    if fraction <= 0 or len(ordered) < 2:
        return []
    k = min(max(1, round(fraction * len(ordered))), len(ordered) - 1)
    return ordered[-k:]


def read_subject_list(path: Path) -> set[int]:
    """Client numbers in an MSU ``*_sub_list.txt`` (any whitespace, with or without zero padding)."""
    return {int(n) for n in re.findall(r"\d+", path.read_text())}


def assign_splits(
    layout: Layout, root: Path, metas: list[VideoMeta], dev_fraction: float
) -> tuple[list[VideoMeta], list[tuple[str, str]], dict]:
    """Final train/dev/test of every video, failures for videos of no split, and what was decided."""
    info: dict = {}
    bad: list[tuple[str, str]] = []
    if layout.name == "msu":
        lists = {s: root / f"{s}_sub_list.txt" for s in ("train", "test")}
        missing = [str(p) for p in lists.values() if not p.is_file()]
        if missing:
            raise UserError(f"MSU-MFSD client lists not found: {', '.join(missing)}; expected {layout.expected}")
        train, test = (read_subject_list(lists[s]) for s in ("train", "test"))
        if train & test:
            raise UserError(f"{lists['train']} and {lists['test']} share clients {sorted(train & test)}")
        info.update(train_subjects=sorted(train), test_subjects=sorted(test))
        kept = []
        for m in metas:
            n = int(m.subject_id)
            if n in train or n in test:
                kept.append(replace(m, split="train" if n in train else "test"))
            else:
                bad.append((m.rel_path, f"client {m.subject_id} is in neither train_sub_list.txt nor test_sub_list.txt"))
        metas = kept
    if layout.name in ("casia", "msu"):
        dev = set(carve_dev_subjects([m.subject_id for m in metas if m.split == "train"], dev_fraction))
        info.update(dev_fraction=dev_fraction, dev_subjects=sorted(dev, key=_subject_number))
        metas = [replace(m, split="dev") if m.subject_id in dev else m for m in metas]
    return metas, bad, info


# ----------------------------------------------------------------------------------------
# Video -> face crops


@dataclass(frozen=True)
class FrameSettings:
    """How frames become rows (picklable: sent to worker processes)."""

    frames_per_video: int = 25
    img_size: int = 256
    margin: float = 0.25
    detector: str = "auto"
    jpeg_quality: int = 95
    depth_dir: str | None = None  # user depth renders mirroring the raw layout; None = template


@dataclass
class VideoResult:
    rows: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def sample_indices(frame_count: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly: the centres of ``n`` equal segments (all if fewer)."""
    if frame_count <= 0 or n <= 0:
        return []
    if n >= frame_count:
        return list(range(frame_count))
    return [int((i + 0.5) * frame_count / n) for i in range(n)]


def count_frames(path: Path) -> int:
    """Frames in a video: the container's count, or counted by decoding when it has none."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return -1
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 0:
            return n
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def read_frames(path: Path, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the frames at ``indices`` (sorted), one at a time, reading the video sequentially.

    Sequential grab() is slower than seeking but exact for every codec; only one decoded
    frame is held at a time.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return
    cap = cv2.VideoCapture(str(path))
    try:
        pos, k = 0, 0
        while k < len(wanted) and cap.grab():
            if pos == wanted[k]:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    yield pos, frame
                k += 1
            pos += 1
    finally:
        cap.release()


def _depth_frames(folder: Path) -> dict[int, Path]:
    """Depth renders in ``folder`` by frame number (the last number in each file name)."""
    found: dict[int, Path] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            numbers = re.findall(r"\d+", f.stem)
            if f.suffix.lower() in IMAGE_EXTENSIONS and numbers:
                found.setdefault(int(numbers[-1]), f)
    return found


class VideoConverter:
    """Turns one video into rows for :meth:`DatasetWriter.add` (one detector per process)."""

    def __init__(self, root: Path, settings: FrameSettings) -> None:
        self.root = Path(root)
        self.settings = settings
        self.detector = faces.create_detector(settings.detector)

    def __call__(self, meta: VideoMeta) -> VideoResult:
        s, result = self.settings, VideoResult()
        path = self.root / meta.rel_path
        total = count_frames(path)
        if total < 0:
            result.failures.append((meta.rel_path, "unreadable video: OpenCV cannot open it"))
            return result
        indices = sample_indices(total, s.frames_per_video)
        depth_maps: dict[int, Path] | None = None
        tolerance = max(1, total // (2 * max(s.frames_per_video, 1)))
        if meta.label == LIVE and s.depth_dir:
            depth_maps = _depth_frames(Path(s.depth_dir) / meta.video_id)
        got: set[int] = set()
        for index, frame in read_frames(path, indices):
            got.add(index)
            face = faces.main_face(self.detector.detect(frame))
            if face is None:
                result.failures.append((meta.rel_path, f"frame {index}: no face detected"))
                continue
            crop = faces.crop_square(frame, face.box, s.margin, s.img_size)
            depth = None
            if meta.label == LIVE:
                if depth_maps is None:
                    depth = faces.face_depth(crop, face)
                else:
                    depth = self._user_depth(depth_maps, index, tolerance, frame.shape[:2], crop)
                    if depth is None:
                        result.failures.append(
                            (meta.rel_path, f"frame {index}: no readable depth map within {tolerance} frames in "
                             f"{Path(s.depth_dir) / meta.video_id}")
                        )
                        continue
            result.rows.append(
                dict(
                    image=faces.encode_jpeg(crop.image, s.jpeg_quality),
                    image_format="jpeg",
                    depth=None if depth is None else faces.encode_png(depth),
                    label=meta.label,
                    attack_type=meta.attack_type,
                    subject_id=meta.subject_id,
                    video_id=meta.video_id,
                    frame_index=index,
                    split=meta.split,
                    source_path=meta.rel_path,
                )
            )
        if not got:
            result.failures.append((meta.rel_path, f"unreadable video: no frame could be decoded (container says {total})"))
        else:
            for index in sorted(set(indices) - got):
                result.failures.append((meta.rel_path, f"frame {index}: could not be decoded (video shorter than its header says?)"))
        return result

    @staticmethod
    def _user_depth(
        maps: dict[int, Path], index: int, tolerance: int, frame_hw: tuple[int, int], crop: faces.Crop
    ) -> np.ndarray | None:
        """The user's depth render nearest to ``index``: a full-frame map, cropped like the image."""
        near = sorted((abs(k - index), k) for k in maps if abs(k - index) <= tolerance)
        for _, k in near:
            depth = faces.read_depth_map(maps[k])
            if depth is not None:
                if depth.shape[:2] != frame_hw:
                    depth = cv2.resize(depth, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_LINEAR)
                return faces.crop_like(depth, crop)
        return None


_WORKER: VideoConverter | None = None  # one per worker process, set by _init_worker


def _init_worker(root: str, settings: FrameSettings) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = VideoConverter(Path(root), settings)


def _work(meta: VideoMeta) -> VideoResult:
    assert _WORKER is not None
    return _WORKER(meta)


def convert_videos(
    layout: Layout,
    root: Path,
    out_dir: Path,
    settings: FrameSettings,
    *,
    domain: str | None = None,
    dev_fraction: float = 0.25,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Convert one raw dataset into ``out_dir`` (the domain's folder); returns its manifest."""
    root = Path(root)
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir} already exists; pass --overwrite to replace it or choose another --out")
    if settings.depth_dir and not Path(settings.depth_dir).is_dir():
        raise UserError(f"--depth-dir {settings.depth_dir} is not a folder")
    metas, bad = scan(layout, root)
    metas, unassigned, split_info = assign_splits(layout, root, metas, dev_fraction)
    detector_name = faces.create_detector(settings.detector).name
    args = dict(
        root=str(root.resolve()),
        frames_per_video=settings.frames_per_video,
        img_size=settings.img_size,
        margin=settings.margin,
        detector=detector_name,
        jpeg_quality=settings.jpeg_quality,
        depth=str(Path(settings.depth_dir).resolve()) if settings.depth_dir else f"template-v{faces.TEMPLATE_VERSION}",
        frame_sampling="centres of N equal segments",
        **split_info,
    )
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(
            DatasetWriter(out_dir, domain=domain or layout.domain, converter=layout.name, converter_args=args, overwrite=overwrite)
        )
        for rel, reason in bad + unassigned:
            writer.fail(rel, reason)
        if workers > 1:
            # spawn, not fork: the parent may hold threads (pyarrow) that fork would copy mid-lock.
            pool = stack.enter_context(
                mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(str(root), settings))
            )
            results: Iterable[VideoResult] = pool.imap(_work, metas, chunksize=1)
        else:
            results = map(VideoConverter(root, settings), metas)
        for done, result in enumerate(results, 1):
            for row in result.rows:
                writer.add(**row)
            for rel, reason in result.failures:
                writer.fail(rel, reason)
            if progress:
                progress(done, len(metas))
    return read_manifest(out_dir)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler or ``kill``) raises SystemExit like Ctrl-C raises
    KeyboardInterrupt, so DatasetWriter removes its partial folder instead of leaving it behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------------------
# CLI


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _margin(text: str) -> float:
    value = float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"expected a margin >= 0, got {text}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality in 1..100, got {text}")
    return value


def add_image_options(p: argparse.ArgumentParser, *, frames: bool = True, margin: float = 0.25) -> None:
    """Options shared by the video converters and ``convert tface``."""
    p.add_argument("--out", required=True, type=Path,
                   help="data root: the dataset is written to OUT/<domain> (what --data points at later)")
    if frames:
        p.add_argument("--frames-per-video", type=_positive_int, default=25, metavar="N",
                       help="frames sampled evenly from each video (default 25)")
    p.add_argument("--img-size", type=_positive_int, default=256, metavar="S", help="side of the square crops (default 256)")
    p.add_argument("--margin", type=_margin, default=margin, metavar="M",
                   help=f"crop side = face side * (1 + M), M/2 on each side, as the reference's add_face_margin "
                        f"(default {margin})")
    if frames:
        p.add_argument("--depth-dir", type=Path, metavar="D",
                       help="user depth renders (e.g. PRNet) mirroring the raw layout: D/<video path without "
                            "extension>/<frame number>.png, full-frame; default: the procedural face template")
    p.add_argument("--detector", choices=faces.DETECTORS, default="auto",
                   help="face detector (auto = yuface, else the OpenCV Haar cascade)")
    p.add_argument("--jpeg-quality", type=_quality, default=95)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset (only once the new one is complete)")


def register_cli(subparsers) -> None:
    """Add ``oulu``, ``casia``, ``replay``, ``msu`` and ``tface`` to the ``convert`` subparsers."""
    from anrl_ray.data import tface  # here, not at import time: tface imports this module

    for layout in LAYOUTS.values():
        p = subparsers.add_parser(
            layout.name,
            help=f"convert {layout.title} videos",
            description=f"Convert {layout.title} ({layout.expected}) into the Parquet format.",
        )
        p.add_argument("--root", required=True, type=Path, help=f"the {layout.title} folder as released")
        add_image_options(p)
        p.add_argument("--domain", default=layout.domain, help=f"domain name, also the output folder (default {layout.domain})")
        if layout.name in ("casia", "msu"):
            p.add_argument("--dev-fraction", type=_fraction, default=0.25,
                           help="fraction of train subjects moved to dev, the last ones in numeric order (default 0.25)")
        p.add_argument("--workers", type=_positive_int, default=1, help="processes decoding videos in parallel (default 1)")
        p.set_defaults(func=run_video_converter, layout=layout.name)
    tface.register_cli(subparsers)


def run_video_converter(args: argparse.Namespace) -> int:
    layout = LAYOUTS[args.layout]
    settings = FrameSettings(
        frames_per_video=args.frames_per_video,
        img_size=args.img_size,
        margin=args.margin,
        detector=args.detector,
        jpeg_quality=args.jpeg_quality,
        depth_dir=str(args.depth_dir) if args.depth_dir else None,
    )
    out_dir = Path(args.out) / args.domain
    started = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"{layout.name}: {done}/{total} videos ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    with sigterm_raises():
        manifest = convert_videos(
            layout, Path(args.root), out_dir, settings, domain=args.domain,
            dev_fraction=getattr(args, "dev_fraction", 0.25), workers=args.workers, overwrite=args.overwrite,
            progress=progress,
        )
    print(
        f"wrote {out_dir}: {manifest['num_rows']} face crops from {manifest['num_videos']} videos; "
        f"{manifest['failed_inputs']} inputs failed (listed in {out_dir / 'conversion_report.json'})"
    )
    return 0
