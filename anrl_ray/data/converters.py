"""Raw FAS video datasets (OULU-NPU, CASIA-FASD, Replay-Attack, MSU-MFSD) -> the Parquet format.

Each converter walks the dataset's published layout, decodes every video with OpenCV,
samples N frames evenly (the centres of N equal segments), detects the face, cuts a square
crop with a margin, resizes it, encodes it as JPEG and, for live videos, attaches a depth
target (the procedural template of :mod:`anrl_ray.data.faces`, or the user's renders from
``--depth-dir``). Output goes through :class:`anrl_ray.data.format.DatasetWriter`, so an
interrupted conversion leaves nothing that looks complete and never destroys an existing
dataset. Anything that cannot be converted (a file name that fits no pattern, an unreadable
video, a frame without a face) is listed in ``conversion_report.json``.

The naming of each dataset and its split rules live in :mod:`anrl_ray.data.layouts`; the
``anrl-ray convert`` command line in :mod:`anrl_ray.cli.convert`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from anrl_ray import LIVE
from anrl_ray.data import faces
from anrl_ray.data.format import DatasetWriter, read_manifest
from anrl_ray.data.layouts import Layout, VideoMeta, assign_splits, scan
from anrl_ray.data.output import check_dataset_name, prepare_output
from anrl_ray.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
    """Convert one raw dataset into ``out_dir`` (the domain's folder); returns its manifest.

    Args:
        layout: the dataset's layout (:data:`anrl_ray.data.layouts.LAYOUTS`).
        root: the dataset folder as released.
        out_dir: the dataset folder to write, ``OUT/<domain>``.
        settings: sampling, crop and encoding of the frames.
        domain: domain name stored in the rows (default: the layout's, e.g. ``O``).
        dev_fraction: CASIA/MSU: fraction of train subjects moved to dev.
        workers: processes decoding videos in parallel.
        overwrite: replace ``out_dir`` if it is a dataset folder (never another folder).
        progress: called with (videos done, videos in all) after each video.

    Raises:
        UserError: a bad name, root, depth folder or output folder (the message says which).
    """
    root, out_dir = Path(root), Path(out_dir)
    domain = check_dataset_name(layout.domain if domain is None else domain, "--domain")
    prepare_output(out_dir, overwrite=overwrite)
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
            DatasetWriter(out_dir, domain=domain, converter=layout.name, converter_args=args, overwrite=overwrite)
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
