"""The domain camera: everything between the scene and the stored JPEG (and the depth PNG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from anrl_ray.data.synthetic.domains import Camera
from anrl_ray.data.synthetic.render import Grid


@dataclass
class CameraVideo:
    """The settings of one domain camera for one video."""

    cam: Camera
    res: float
    blur: float
    noise: float
    jpeg: int
    gain: np.ndarray
    gamma: float

    def params(self) -> dict[str, Any]:
        """JSON-able record of the settings."""
        return {"name": self.cam.name, "res": round(float(self.res), 4), "blur": round(float(self.blur), 4),
                "noise": round(float(self.noise), 5), "jpeg": self.jpeg, "gamma": round(float(self.gamma), 4),
                "gain": [round(float(g), 4) for g in self.gain]}


def sample_camera(rng: np.random.Generator, cam: Camera) -> CameraVideo:
    """Draw the per-video settings of ``cam`` (within its ranges)."""
    return CameraVideo(
        cam=cam,
        res=rng.uniform(*cam.res_scale),
        blur=rng.uniform(*cam.blur),
        noise=rng.uniform(*cam.noise),
        jpeg=int(rng.integers(cam.jpeg[0], cam.jpeg[1] + 1)),
        gain=np.asarray(cam.cast, np.float32) * rng.uniform(0.92, 1.08) * (1 + rng.uniform(-0.02, 0.02, 3)),
        gamma=rng.uniform(*cam.gamma),
    )


def capture(scene: np.ndarray, cv: CameraVideo, size: int, rng: np.random.Generator) -> bytes:
    """Scene (R, R, 3) -> stored JPEG of ``size`` px: white balance, vignetting, sensor, optics, codec."""
    img = scene * cv.gain * (1.0 - cv.cam.vignette * Grid.radius2(scene.shape[0]))[..., None]
    if cv.cam.saturation != 1.0:
        gray = img.mean(axis=2, keepdims=True)
        img = gray + cv.cam.saturation * (img - gray)
    if cv.cam.flare:
        img = cv.cam.flare + (1.0 - cv.cam.flare) * img
    sensor = max(8, int(round(size * cv.res)))
    img = cv2.resize(img, (sensor, sensor), interpolation=cv2.INTER_AREA)
    img = cv2.GaussianBlur(img, (0, 0), max(cv.blur * sensor / size, 0.3))
    img = np.clip(img, 0, 1)
    img = img + rng.standard_normal(img.shape).astype(np.float32) * (cv.noise * np.sqrt(img + 0.02))
    img = np.clip(img, 0, 1) ** (1.0 / cv.gamma)
    interp = cv2.INTER_AREA if sensor > size else cv2.INTER_LINEAR
    img = cv2.resize(img, (size, size), interpolation=interp)
    bgr = np.clip(img[..., ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cv.jpeg])
    assert ok
    return buf.tobytes()


def depth_png(depth: np.ndarray, size: int) -> bytes:
    """Depth map (R, R) in [0, 1] -> 8-bit PNG of ``size`` px (255 = nearest)."""
    d = cv2.resize(depth, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.clip(d * 255.0 + 0.5, 0, 255).astype(np.uint8))
    assert ok
    return buf.tobytes()

