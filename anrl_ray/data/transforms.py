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
"""

from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2
import numpy as np

MEAN = 0.5
STD = 0.5

# Keep OpenCV single-threaded inside data workers: parallelism comes from Ray Data tasks /
# DataLoader workers, and nested thread pools oversubscribe small machines.
cv2.setNumThreads(1)


def decode_bgr(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> BGR uint8 ``(H, W, 3)`` (as ``cv2.imdecode`` returns it)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not decode an image of {len(data)} bytes")
    return img


def decode_gray(data: bytes) -> np.ndarray:
    """Encoded 8-bit grayscale PNG bytes (a stored depth map) -> uint8 ``(H, W)``; ValueError if undecodable.

    (User depth renders of any bit depth are read by :func:`anrl_ray.data.faces.decode_gray_or_none`.)
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"could not decode a depth map of {len(data)} bytes")
    return img


class FASTransform:
    """Decode + augment + channel stacking + depth target for face anti-spoofing crops.

    Args:
        img_size: network input size (H = W), divisible by 8.
        in_channels: 6 (RGB + HSV, the reference) or 3 (RGB).
        augment: training augmentation (HueSaturationValue p=0.1, HorizontalFlip p=0.5).
        seed: seed of the augmentation RNG (``set_seed`` re-seeds it, e.g. once per batch).
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
        self._color = A.Compose([A.HueSaturationValue(p=0.1)], seed=seed) if augment else None
        geometric = [A.HorizontalFlip(p=0.5)] if augment else []
        self._geometric = A.Compose(
            [*geometric, A.Resize(img_size, img_size), A.Normalize(mean=MEAN, std=STD)],
            additional_targets={"image1": "image"},
            seed=None if seed is None else seed + 1,
        )

    def set_seed(self, seed: int) -> None:
        """Re-seed the augmentation RNG (deterministic augmentation from here on)."""
        if self._color is not None:
            self._color.set_random_seed(seed)
        self._geometric.set_random_seed(seed + 1)

    def __call__(self, image: bytes, depth: bytes | None, label: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample: encoded image (+ encoded depth PNG or None) -> (image (C,H,W), depth (1,s,s))."""
        bgr = decode_bgr(image)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._color is not None:
            rgb = self._color(image=rgb)["image"]
        targets = {"image": rgb}
        if self.in_channels == 6:
            targets["image1"] = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        live_depth = depth is not None and int(label) == 0
        if live_depth:
            dmap = decode_gray(depth)
            if dmap.shape != bgr.shape[:2]:
                dmap = cv2.resize(dmap, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
            targets["mask"] = dmap
        out = self._geometric(**targets)
        chans = [out["image"]] + ([out["image1"]] if self.in_channels == 6 else [])
        x = np.concatenate(chans, axis=2).transpose(2, 0, 1)  # (C, H, W)
        s = self.depth_size
        if live_depth:
            # float first: the reference interpolates the float tensor, no rounding to uint8
            d = cv2.resize(out["mask"].astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR) / 255.0
        else:
            d = np.zeros((s, s), np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), d[None].astype(np.float32)

    def batch(
        self, images: Sequence[bytes], depths: Sequence[bytes | None], labels: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A list of samples -> stacked ``(N, C, H, W)`` images and ``(N, 1, s, s)`` depth targets."""
        n = len(images)
        x = np.empty((n, self.in_channels, self.img_size, self.img_size), np.float32)
        d = np.empty((n, 1, self.depth_size, self.depth_size), np.float32)
        for i in range(n):
            x[i], d[i] = self(images[i], depths[i], labels[i])
        return x, d
