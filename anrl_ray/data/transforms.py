"""Per-sample preprocessing: decode -> augment -> 6-channel (RGB+HSV) input + depth target.

One implementation shared by the Ray Data pipeline (:mod:`anrl_ray.data.pipeline`) and the
reference-style LMDB + DataLoader pipeline of ``benchmarks/data_pipeline.py``, so both do the
same work per image. It reproduces the reference ``DG_Dataset.__getitem_once`` + transforms:

1. ``cv2.imdecode`` -> BGR uint8; HSV = ``cv2.cvtColor(BGR2HSV)`` of the *un-augmented* crop
   (OpenCV 8-bit HSV: H in [0, 180), S and V in [0, 255]); RGB = BGR2RGB.
2. Training only: ``HueSaturationValue(p=0.1)`` on the RGB image (the reference builds it in a
   Compose without ``additional_targets``, so the HSV image is not touched by it).
3. ``HorizontalFlip()`` (training only) + ``Resize(img_size)`` + ``Normalize(0.5, 0.5)`` applied
   identically to RGB, HSV (an additional "image" target) and the depth map (a "mask": flipped,
   nearest-neighbour resized). Normalize divides by 255 for every channel, H included (a quirk
   kept from the reference: normalised H spans [-1, 0.41]).
4. Depth target: the resized mask, bilinearly resized to ``img_size // 8`` (what the reference's
   ``F.interpolate(mode="bilinear")`` computes) and divided by 255; all zeros for spoof samples.
   A live sample without a stored depth map also gets zeros (converters should store one).

Output per sample: image float32 ``(C, H, W)`` with channels R, G, B[, H, S, V]; depth float32
``(1, s, s)``.

How (speed, not semantics): step 2 calls albumentations' own ``HueSaturationValue.apply`` with
parameters drawn here (probability 0.1, shifts uniform in its default limits), and step 3 runs
the same OpenCV calls albumentations makes (``cv2.flip``, ``cv2.resize`` INTER_LINEAR for images
and INTER_NEAREST for the mask, a float32 lookup table for Normalize) without its per-call
overhead: the resized uint8 RGB and HSV planes go into one preallocated ``(N, C, H, W)`` batch
buffer (``cv2.split``), and a whole batch is normalised by one ``cv2.LUT`` (:func:`normalize`).
The Ray Data pipeline moves the uint8 planes (:meth:`FASTransform.planes`) and normalises on
the consumer side, a quarter of the bytes through the object store.
Outputs equal albumentations' for the same flip / colour decisions (``tests/test_transforms.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import cv2
import numpy as np

MEAN = 0.5
STD = 0.5
HSV_P = 0.1  # probability of HueSaturationValue (reference)
FLIP_P = 0.5  # probability of HorizontalFlip (albumentations' default, as the reference)

Encoded = Union[bytes, bytearray, memoryview, np.ndarray]  # encoded image bytes, or a uint8 view of them

# Keep OpenCV single-threaded inside data workers: parallelism comes from Ray Data tasks /
# DataLoader workers, and nested thread pools oversubscribe small machines.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class InputSpec:
    """What the network is fed.

    Attributes:
        img_size: input H = W (divisible by 8); stored crops are resized to it.
        in_channels: 6 = RGB + HSV (reference), 3 = RGB.
    """

    img_size: int = 256
    in_channels: int = 6

    def __post_init__(self) -> None:
        if self.img_size <= 0 or self.img_size % 8:
            raise ValueError(f"InputSpec.img_size must be a positive multiple of 8, got {self.img_size}")
        if self.in_channels not in (3, 6):
            raise ValueError(f"InputSpec.in_channels must be 6 (RGB+HSV) or 3 (RGB), got {self.in_channels}")

    @property
    def depth_size(self) -> int:
        return self.img_size // 8


def _split_writes_in_place() -> bool:
    """Whether ``cv2.split(img, [planes])`` fills the given arrays (it does in OpenCV 4's bindings)."""
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    planes = np.zeros((3, 2, 2), np.uint8)
    cv2.split(img, [planes[0], planes[1], planes[2]])
    return bool(np.array_equal(planes, img.transpose(2, 0, 1)))


_SPLIT_IN_PLACE = _split_writes_in_place()


def _as_u8(data: Encoded) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)


def decode_bgr(data: Encoded) -> np.ndarray:
    """Encoded JPEG/PNG bytes (or a uint8 array of them) -> BGR uint8 ``(H, W, 3)`` (``cv2.imdecode``)."""
    img = cv2.imdecode(_as_u8(data), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not decode an image of {len(data)} bytes")
    return img


def decode_gray(data: Encoded) -> np.ndarray:
    """Encoded 8-bit grayscale PNG bytes (a stored depth map) -> uint8 ``(H, W)``; ValueError if undecodable.

    (User depth renders of any bit depth are read by :func:`anrl_ray.data.faces.decode_gray_or_none`.)
    """
    img = cv2.imdecode(_as_u8(data), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"could not decode a depth map of {len(data)} bytes")
    return img


# Normalize(mean=0.5, std=0.5, max_pixel_value=255) of every uint8 value, as albumentations computes it
_NORMALIZE_LUT = (np.arange(256, dtype=np.float32) - np.float32(MEAN * 255.0)) * np.float32(1.0 / (STD * 255.0))
_NORMALIZE_LUT.setflags(write=False)


def normalize(planes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels (any shape, last axis W) -> float32 ``(x / 255 - 0.5) / 0.5``, the reference's Normalize.

    One ``cv2.LUT`` pass; ``out`` (float32, same shape, C-contiguous) receives it if given.
    """
    if planes.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {planes.dtype}")
    if out is None:
        out = np.empty(planes.shape, np.float32)
    if planes.size:
        w = planes.shape[-1]
        flat = out.reshape(-1, w)
        res = cv2.LUT(np.ascontiguousarray(planes).reshape(-1, w), _NORMALIZE_LUT, dst=flat)
        if not np.shares_memory(res, out):  # OpenCV allocated its own output after all
            flat[...] = res
    return out


class FASTransform:
    """Decode + augment + channel stacking + depth target for face anti-spoofing crops.

    Args:
        img_size: network input size (H = W), divisible by 8.
        in_channels: 6 (RGB + HSV, the reference) or 3 (RGB).
        augment: training augmentation (HueSaturationValue p=0.1, HorizontalFlip p=0.5).
        seed: seed of the augmentation RNG (``set_seed`` re-seeds it, e.g. once per batch);
            None: a fresh one.
    """

    def __init__(self, img_size: int, in_channels: int = 6, augment: bool = False, seed: int | None = None) -> None:
        if img_size <= 0 or img_size % 8:
            raise ValueError(f"img_size must be a positive multiple of 8 (depth map is img_size/8), got {img_size}")
        if in_channels not in (3, 6):
            raise ValueError(f"in_channels must be 6 (RGB+HSV) or 3 (RGB), got {in_channels}")
        self.img_size = img_size
        self.in_channels = in_channels
        self.augment = augment
        self.depth_size = img_size // 8
        self._hsv = None  # albumentations' HueSaturationValue: its limits and apply(); the values are drawn here
        if augment:
            import albumentations as A  # here, not at import: half a second of every process that imports the pipeline

            self._hsv = A.HueSaturationValue(p=1.0)
        self._rng = np.random.default_rng(seed)

    def set_seed(self, seed: int) -> None:
        """Re-seed the augmentation RNG (deterministic augmentation from here on)."""
        self._rng = np.random.default_rng(seed)

    def __call__(self, image: Encoded, depth: Encoded | None, label: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample: encoded image (+ encoded depth PNG or None) -> (image (C,H,W), depth (1,s,s))."""
        x, d = self.batch([image], [depth], [label])
        return x[0], d[0]

    def batch(
        self,
        images: Sequence[Encoded],
        depths: Sequence[Encoded | None],
        labels: Sequence[int],
        *,
        failures: list[tuple[int, str]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Samples -> stacked ``(N, C, H, W)`` images and ``(N, 1, s, s)`` depth targets.

        Row ``i`` gets the augmentation draws the ``i``-th of ``N`` calls of the transform would
        get. A row that does not decode raises ValueError (or ``cv2.error``); with ``failures``
        given, it is left as zeros and ``(i, reason)`` is appended instead.
        """
        planes, d = self.planes(images, depths, labels, failures=failures)
        x = normalize(planes)
        if failures:
            x[[i for i, _ in failures]] = 0.0
        return x, d

    def planes(
        self,
        images: Sequence[Encoded],
        depths: Sequence[Encoded | None],
        labels: Sequence[int],
        *,
        failures: list[tuple[int, str]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`batch`, but images stay uint8 ``(N, C, H, W)``, not yet normalised.

        ``normalize(planes)`` gives :meth:`batch`'s images (a quarter of the bytes to move
        between processes until then). Rows that fail are all-zero planes.
        """
        n, size, c = len(images), self.img_size, self.in_channels
        planes = np.zeros((n, c, size, size), np.uint8)
        d = np.zeros((n, 1, self.depth_size, self.depth_size), np.float32)
        for i in range(n):
            try:
                self._one(images[i], depths[i], int(labels[i]), planes[i], d[i, 0])
            except (ValueError, cv2.error) as e:
                if failures is None:
                    raise
                planes[i], d[i] = 0, 0.0
                failures.append((i, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__))
        return planes, d

    def _draw(self) -> tuple[tuple[float, float, float] | None, bool]:
        """Augmentation decisions of one sample: HSV shifts (or None) and whether to flip."""
        if not self.augment:
            return None, False
        rng, t = self._rng, self._hsv
        color = None
        if rng.random() < HSV_P:
            color = (rng.uniform(*t.hue_shift_limit), rng.uniform(*t.sat_shift_limit), rng.uniform(*t.val_shift_limit))
        return color, bool(rng.random() < FLIP_P)

    def _one(self, image: Encoded, depth: Encoded | None, label: int, dst: np.ndarray, dst_depth: np.ndarray) -> None:
        """Decode + augment one sample into ``dst`` (uint8 ``(C, H, W)``) and ``dst_depth`` (float32 ``(s, s)``)."""
        bgr = decode_bgr(image)
        dmap = decode_gray(depth) if depth is not None and label == 0 else None
        color, flip = self._draw()
        h, w = bgr.shape[:2]
        size = self.img_size
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if color is not None:
            rgb = self._hsv.apply(rgb, hue_shift=color[0], sat_shift=color[1], val_shift=color[2])
        # RGB and HSV resized as two 3-channel images, as albumentations does (OpenCV's 6-channel
        # resize rounds differently when downscaling)
        parts = [rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)] if self.in_channels == 6 else [rgb]
        for k, part in enumerate(parts):
            if flip:
                part = cv2.flip(part, 1)
            if (h, w) != (size, size):
                part = cv2.resize(part, (size, size), interpolation=cv2.INTER_LINEAR)
            if _SPLIT_IN_PLACE:
                cv2.split(part, [dst[3 * k], dst[3 * k + 1], dst[3 * k + 2]])  # HWC -> planes of dst
            else:
                dst[3 * k : 3 * k + 3] = part.transpose(2, 0, 1)
        if dmap is None:
            return  # dst_depth stays zeros (spoof, or live without a stored map)
        if dmap.shape != (h, w):
            dmap = cv2.resize(dmap, (w, h), interpolation=cv2.INTER_LINEAR)
        if flip:
            dmap = cv2.flip(dmap, 1)
        if dmap.shape != (size, size):
            dmap = cv2.resize(dmap, (size, size), interpolation=cv2.INTER_NEAREST)
        s = self.depth_size
        # float first: the reference interpolates the float tensor, no rounding to uint8
        dst_depth[...] = cv2.resize(dmap.astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR) / 255.0
