"""Faces without downloads: detection, square crops, and pseudo-depth targets.

* Detection uses a detector whose weights ship inside an installed package:
  ``yuface`` (libfacedetection / YuNet compiled in; box + 5 landmarks) by default,
  OpenCV's bundled Haar cascade (box only) as the fallback. Nothing is downloaded.
* :func:`crop_square` cuts a square around a face box, enlarged by a margin, pads with
  black where it leaves the frame, and resizes it to ``size x size``. The margin has the
  reference code's meaning (``security/common/utils/face_utils.py: add_face_margin`` in
  Tencent/TFace): the square's side is ``side * (1 + margin)``, ``margin / 2`` on each side.
* ANRL's depth head needs a depth target for live faces; the authors used PRNet renders.
  Without downloads we use a generic face height field built procedurally in a canonical
  5-point frame (the usual 112x112 alignment template), warped onto the detected landmarks
  with a least-squares similarity transform (:func:`template_depth`). Users who have real
  renders (PRNet) pass them instead (:func:`read_depth_map`); spoof faces get no depth
  (the reference trains them towards an all-zero map).

Landmark order everywhere: eye, eye, nose tip, mouth corner, mouth corner, each pair in
image order left to right (what YuNet returns), shape ``(5, 2)`` in pixels ``(x, y)``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

# Canonical 5-point template of 112x112 aligned faces (eyes, nose tip, mouth corners).
CANONICAL_SIZE = 112.0
CANONICAL_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# Where the canonical face box sits in that frame (used when a detector gives no landmarks).
CANONICAL_BOX = (12.0, 14.0, 88.0, 98.0)  # x, y, w, h

DETECTORS = ("auto", "yuface", "haar")
# Bump when canonical_height changes, so converted datasets say which template they hold.
TEMPLATE_VERSION = 1


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixels."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float  # detector confidence in [0, 1] (Haar: 1.0)
    landmarks: np.ndarray | None = None  # (5, 2) float, or None when the detector has none

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


class FaceDetector(Protocol):
    name: str

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """All faces in a BGR uint8 image, in the image's pixel coordinates."""
        ...


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so its longer side is at most ``max_side``, and the factor used."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return image, scale


def _yuface_openmp(module) -> Callable[[int], None] | None:
    """``omp_set_num_threads`` of the OpenMP runtime vendored in the yuface wheel, if any."""
    base = Path(module.__file__).resolve().parent
    for lib in sorted([*base.glob("libgomp*.so*"), *(base.parent / "yuface.libs").glob("libgomp*.so*")]):
        try:
            return ctypes.CDLL(str(lib)).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


class YuFaceDetector:
    """libfacedetection (YuNet) through the ``yuface`` package: box + 5 landmarks.

    Frames are shrunk to ``max_side`` pixels on the longer side first (the packaged model
    is meant for at most ~960 px; faces in the FAS datasets are large, and it is faster).

    The wheel runs its network with OpenMP on every core, and OpenMP's spinning threads
    make it 4-6x slower when the cores are shared (measured: 85 vs 20 ms on 320x240).
    ``threads`` caps it for the calling thread (the cap is a per-thread OpenMP setting, so it
    is re-applied on each call); parallelism comes from converter worker processes instead.
    """

    name = "yuface"

    def __init__(self, min_score: float = 0.5, max_side: int = 640, threads: int | None = 1) -> None:
        import yuface  # fail here, not mid-conversion, if it is missing

        self._detect = yuface.c_detect
        self._set_threads = _yuface_openmp(yuface) if threads else None
        self.threads = threads
        self.min_score = min_score
        self.max_side = max_side

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        if self._set_threads is not None:
            self._set_threads(self.threads)
        small, scale = _downscale(image_bgr, self.max_side)
        # Rows: score*100, x, y, w, h, 10 landmark coordinates, (unused); int16.
        result = np.asarray(self._detect(np.ascontiguousarray(small)))
        if result.ndim != 2 or result.shape[0] == 0:
            return []
        faces = []
        for row in result:
            score = float(row[0]) / 100.0
            if score < self.min_score:
                continue
            box = tuple(float(v) / scale for v in row[1:5])
            landmarks = row[5:15].astype(np.float64).reshape(5, 2) / scale
            faces.append(Face(box=box, score=score, landmarks=landmarks))
        return faces


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (ships with ``opencv-python-headless<5``); box only."""

    name = "haar"

    def __init__(self, max_side: int = 640, min_neighbors: int = 5, min_size: int = 24) -> None:
        data = getattr(cv2, "data", None)
        path = Path(getattr(data, "haarcascades", "")) / "haarcascade_frontalface_default.xml"
        if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
            raise RuntimeError(
                f"OpenCV's Haar cascade is not available ({path}); install opencv-python-headless<5 "
                "or use the yuface detector"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        self.max_side = max_side
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        small, scale = _downscale(image_bgr, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        boxes = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(self.min_size, self.min_size)
        )
        return [Face(box=tuple(float(v) / scale for v in b), score=1.0) for b in np.reshape(boxes, (-1, 4))]


def create_detector(name: str = "auto") -> FaceDetector:
    """``auto`` = yuface when importable, else the Haar cascade."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")
    if name in ("auto", "yuface"):
        try:
            return YuFaceDetector()
        except ImportError:
            if name == "yuface":
                raise
    return HaarFaceDetector()


def main_face(faces: list[Face]) -> Face | None:
    """The face to keep when a frame shows several: the largest box."""
    return max(faces, key=lambda f: (f.area, f.score), default=None)


@dataclass(frozen=True)
class Crop:
    """A square face crop and the map from frame pixels to crop pixels."""

    image: np.ndarray  # (size, size, 3) BGR uint8
    origin: tuple[int, int]  # top-left of the square in frame pixels (may be negative)
    side: int  # side of the square in frame pixels
    size: int  # side of the crop in pixels

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> crop pixel coordinates."""
        return (np.asarray(points, np.float64) - np.array(self.origin, np.float64)) * (self.size / self.side)


def square_box(box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square centred on ``box`` with side ``max(w, h) * (1 + margin)``."""
    x, y, w, h = box
    side = max(int(round(max(w, h) * (1.0 + margin))), 1)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def _cut(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The ``side x side`` window at (x0, y0), zero-padded where it leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size x size`` (area filter when shrinking, bilinear when growing).

    An image that already has that size is returned as it is.
    """
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def crop_square(image_bgr: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int) -> Crop:
    """Square crop around ``box`` enlarged by ``margin``, resized to ``size x size``."""
    x0, y0, side = square_box(box, margin)
    return Crop(image=resize_square(_cut(image_bgr, x0, y0, side), size), origin=(x0, y0), side=side, size=size)


def crop_like(image: np.ndarray, crop: Crop) -> np.ndarray:
    """Cut the same square as ``crop`` out of another map of the frame (e.g. a depth map)."""
    return resize_square(_cut(image, crop.origin[0], crop.origin[1], crop.side), crop.size)


# ----------------------------------------------------------------------------------------
# Pseudo depth


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst.

    Returns the 2x3 matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``.
    """
    s = np.asarray(src, np.float64) @ np.array([1.0, 1j])
    d = np.asarray(dst, np.float64) @ np.array([1.0, 1j])
    sc, dc = s - s.mean(), d - d.mean()
    denom = float(np.sum(np.abs(sc) ** 2))
    if denom == 0.0:
        raise ValueError("degenerate landmarks: all source points coincide")
    a = np.sum(dc * np.conj(sc)) / denom  # scale * exp(i * angle)
    b = d.mean() - a * s.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) / 2.0)


def canonical_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Generic face height in [0, 1] at canonical coordinates (112x112 frame, y down).

    An ellipsoidal head (flattened front, tapering to the chin) plus a nose ridge that
    rises and widens towards the tip, a nose-tip bulb, brow ridge, shallow eye sockets,
    lips and chin; zero outside the face oval.
    """
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = CANONICAL_POINTS
    cx, cy = 56.0, 62.0
    v = (y - cy) / 54.0
    half_width = 44.0 * (1.0 - 0.22 * np.clip(v, 0.0, None) ** 2)  # narrower towards the chin
    r2 = ((x - cx) / half_width) ** 2 + v**2
    inside = r2 < 1.0
    dome = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) ** 0.7  # ** 0.7: flatter front, steeper sides

    # Nose ridge from between the eyes (y0) to the tip (y1).
    y0, y1 = 0.5 * (ley + rey) - 2.0, ny + 1.0
    t = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)
    along = np.where(y < y0, np.exp(-(((y - y0) / 4.0) ** 2) / 2), 1.0)
    along = np.where(y > y1, np.exp(-(((y - y1) / 4.0) ** 2) / 2), along)
    ridge = (0.10 + 0.16 * t) * np.exp(-(((x - nx) / (2.5 + 4.0 * t)) ** 2) / 2) * along
    bulb = 0.07 * _gauss(x, y, nx, ny, 8.0, 5.0)

    brow = 0.035 * (_gauss(x, y, lex, ley - 8.0, 10.0, 3.5) + _gauss(x, y, rex, rey - 8.0, 10.0, 3.5))
    sockets = 0.06 * (_gauss(x, y, lex, ley, 7.0, 4.5) + _gauss(x, y, rex, rey, 7.0, 4.5))
    lips = 0.03 * _gauss(x, y, 0.5 * (mlx + mrx), 0.5 * (mly + mry), 11.0, 4.0)
    chin = 0.03 * _gauss(x, y, cx, 107.0, 12.0, 5.0)

    z = 0.65 * dome + ridge + bulb + brow - sockets + lips + chin
    return np.clip(np.where(inside, z, 0.0), 0.0, 1.0)


def template_depth(
    size: int, landmarks: np.ndarray | None = None, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """The generic face depth template aligned to a face in a ``size x size`` crop.

    Args:
        size: side of the crop in pixels.
        landmarks: (5, 2) landmarks in crop pixels (preferred; similarity-aligned).
        box: face box (x, y, w, h) in crop pixels, used when there are no landmarks
            (the canonical face box is mapped onto it, axis-aligned).

    Returns:
        ``(size, size)`` uint8, 255 = nearest to the camera, 0 = background.
    """
    if landmarks is not None:
        m = similarity_transform(CANONICAL_POINTS, landmarks)
    elif box is not None:
        bx, by, bw, bh = CANONICAL_BOX
        s = float(np.sqrt((box[2] * box[3]) / (bw * bh)))
        m = np.array([[s, 0.0, box[0] + box[2] / 2 - s * (bx + bw / 2)], [0.0, s, box[1] + box[3] / 2 - s * (by + bh / 2)]])
    else:
        raise ValueError("template_depth needs landmarks or a face box")
    inv = cv2.invertAffineTransform(m)  # crop pixels -> canonical coordinates
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    cy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return np.round(canonical_height(cx, cy) * 255.0).astype(np.uint8)


def face_depth(crop: Crop, face: Face) -> np.ndarray:
    """Template depth for ``face`` in ``crop`` (landmarks when the detector gave them)."""
    if face.landmarks is not None:
        return template_depth(crop.size, landmarks=crop.to_crop(face.landmarks))
    x, y, w, h = face.box
    (cx0, cy0), (cx1, cy1) = crop.to_crop(np.array([[x, y], [x + w, y + h]]))
    return template_depth(crop.size, box=(cx0, cy0, cx1 - cx0, cy1 - cy0))


def read_depth_map(path: str | Path) -> np.ndarray | None:
    """A user-supplied depth render as 8-bit grayscale, or None if it cannot be read."""
    try:
        return decode_gray_or_none(Path(path).read_bytes())
    except OSError:
        return None


def decode_gray_or_none(data: bytes | None) -> np.ndarray | None:
    """User depth renders: encoded image bytes -> 2-D uint8, or None if missing or undecodable.

    Accepts 8- and 16-bit (scaled to 8 bits), grayscale or colour images. The training
    pipeline reads the stored 8-bit depth PNGs with :func:`anrl_ray.data.transforms.decode_gray`,
    which raises instead.
    """
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY) if img.shape[2] >= 3 else img[:, :, 0]
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        return None
    return img


def encode_jpeg(image_bgr: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
