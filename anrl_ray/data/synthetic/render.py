"""Rendering of people: subjects (identity), the posed and lit head with its exact depth map.

A height field (ellipsoidal head + nose, eye sockets, brow ridge, cheeks, lips, chin) posed by
yaw / pitch / roll and shaded with Lambert + Blinn-Phong under a per-video light; albedo with eyes
(iris, pupil, blinks), brows, lips, nostrils, hair, glasses. The height field used for shading *is*
the stored depth map, so the depth target is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from anrl_ray.data.synthetic.domains import Domain


@dataclass
class Subject:
    """Identity: face shape and appearance (fixed across videos)."""

    aspect: float  # head half-height / half-width
    relief: float  # head depth / half-width
    nose_h: float
    nose_w: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_t: float
    mouth_y: float
    mouth_w: float
    hairline: float
    skin: np.ndarray  # RGB albedo
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    glasses: bool


_SKIN_RAMP = np.array([[0.95, 0.78, 0.68], [0.85, 0.64, 0.5], [0.66, 0.46, 0.33], [0.42, 0.28, 0.2]], np.float32)
_HAIR = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.55, 0.42, 0.25], [0.6, 0.58, 0.55], [0.5, 0.25, 0.12]], np.float32)
_IRIS = np.array([[0.25, 0.15, 0.08], [0.2, 0.35, 0.55], [0.3, 0.4, 0.25], [0.1, 0.07, 0.05]], np.float32)


def sample_subject(rng: np.random.Generator, dom: Domain) -> Subject:
    """Draw an identity of domain ``dom`` (its skin-tone range)."""
    t = rng.uniform(*dom.skin_tone) * (len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    skin = _SKIN_RAMP[i] * (1 - (t - i)) + _SKIN_RAMP[i + 1] * (t - i)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1).astype(np.float32)
    hair = _HAIR[rng.choice(len(_HAIR), p=[0.4, 0.3, 0.15, 0.1, 0.05])] * rng.uniform(0.85, 1.15)
    return Subject(
        aspect=rng.uniform(1.2, 1.4),
        relief=rng.uniform(0.75, 0.95),
        nose_h=rng.uniform(0.25, 0.42),
        nose_w=rng.uniform(0.08, 0.12),
        eye_x=rng.uniform(0.33, 0.4),
        eye_y=rng.uniform(-0.18, -0.1),
        eye_w=rng.uniform(0.11, 0.15),
        eye_h=rng.uniform(0.045, 0.065),
        brow_t=rng.uniform(0.022, 0.045),
        mouth_y=rng.uniform(0.45, 0.55),
        mouth_w=rng.uniform(0.2, 0.3),
        hairline=rng.uniform(-0.78, -0.5),
        skin=skin,
        hair=np.clip(hair, 0, 1).astype(np.float32),
        iris=_IRIS[rng.integers(len(_IRIS))],
        lips=np.clip(skin * np.array([1.05, 0.68, 0.68]) + rng.uniform(-0.04, 0.04), 0, 1).astype(np.float32),
        glasses=bool(rng.random() < 0.15),
    )


@dataclass
class Pose:
    """Head placement in the render: centre and half-width in render pixels, angles in radians."""

    cx: float
    cy: float
    a: float  # head half-width, render pixels
    roll: float
    yaw: float
    pitch: float
    blink: bool = False
    gaze: float = 0.0


@dataclass
class Light:
    """The light on the person (and on an attack medium)."""

    ambient: float
    diffuse: float
    direction: np.ndarray  # unit vector towards the light (x right, y down, z to the camera)
    color: np.ndarray  # RGB


class Grid:
    """Pixel-centre coordinates of an R x R render (cached per size)."""

    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def get(cls, R: int) -> tuple[np.ndarray, np.ndarray]:
        if R not in cls._cache:
            c = np.arange(R, dtype=np.float32) + 0.5
            cls._cache[R] = (np.broadcast_to(c[None, :], (R, R)).copy(), np.broadcast_to(c[:, None], (R, R)).copy())
        return cls._cache[R]

    @classmethod
    def radius2(cls, R: int) -> np.ndarray:
        """Squared distance from the centre, 1 at the corners."""
        key = -R
        if key not in cls._cache:
            xx, yy = cls.get(R)
            cls._cache[key] = (((xx / R - 0.5) ** 2 + (yy / R - 0.5) ** 2) * 2.0, None)
        return cls._cache[key][0]


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic ramp of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def blend(base: np.ndarray, color: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``base`` (H, W, 3) towards ``color`` with weight ``w`` (H, W)."""
    return base + (color - base) * w[..., None]


def smooth_field(rng: np.random.Generator, R: int, k: int, channels: int = 1) -> np.ndarray:
    """Low-frequency random field in [-1, 1] (a k x k grid upsampled)."""
    small = rng.uniform(-1, 1, (k, k, channels)).astype(np.float32)
    out = cv2.resize(small, (R, R), interpolation=cv2.INTER_CUBIC)
    return out.reshape(R, R, channels)


def render_person(
    R: int, s: Subject, p: Pose, light: Light, skin_tex: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a posed, lit head (with hair, neck and shoulders) on a transparent layer.

    Returns ``(rgb (R,R,3) premultiplied by alpha, alpha (R,R), depth (R,R))``, float32. Depth is
    the height field used for shading, scaled to [0, 1] (1 = nearest), 0 off the head.
    """
    xx, yy = Grid.get(R)
    b = p.a * s.aspect
    X, Y = xx - p.cx, yy - p.cy
    cr, sr = math.cos(p.roll), math.sin(p.roll)
    u0 = (cr * X + sr * Y) / p.a
    v0 = (-sr * X + cr * Y) / b
    r2 = u0 * u0 + v0 * v0
    head = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    alpha = np.clip((1.0 - np.sqrt(r2)) * p.a, 0.0, 1.0)  # ~1 px anti-aliased rim
    # Features move with the head's rotation: a surface point at height ``head`` shifts by sin(angle) * head.
    sy, sp = math.sin(p.yaw), math.sin(p.pitch)
    u = u0 - sy * head * 0.8
    v = v0 - sp * head * 0.8
    au = np.abs(u)
    ex, ey = s.eye_x, s.eye_y

    def g(du: Any, sx: float, dv: Any, sy_: float) -> np.ndarray:
        return np.exp(-((du / sx) ** 2) - ((dv / sy_) ** 2))

    h = s.relief * head
    h = h + s.nose_h * g(u, s.nose_w, v - 0.12, 0.2)
    h = h - 0.12 * g(au - ex, 0.15, v - ey, 0.09)  # eye sockets
    h = h + 0.06 * g(au - ex, 0.22, v - ey + 0.14, 0.06)  # brow ridge
    h = h + 0.06 * g(au - 0.45, 0.2, v - 0.18, 0.18)  # cheeks
    h = h + 0.05 * g(u, s.mouth_w, v - s.mouth_y, 0.07)  # lips
    h = h + 0.05 * g(u, 0.2, v - 0.8, 0.1)  # chin
    h = h * np.clip(head * 4.0, 0.0, 1.0)
    # Rigid rotation of the height field: z' = z cos - x sin (yaw about the vertical axis, pitch likewise).
    z = h * (math.cos(p.yaw) * math.cos(p.pitch)) - u0 * sy * 0.6 - v0 * sp * 0.6
    gy, gx = np.gradient(z * p.a)
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    nx, ny, nz = -gx * inv, -gy * inv, inv
    L = light.direction
    ndl = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, None)
    H = L + np.array([0, 0, 1], np.float32)
    H = H / np.linalg.norm(H)
    spec = np.clip(nx * H[0] + ny * H[1] + nz * H[2], 0.0, None) ** 24

    # albedo
    alb = s.skin[None, None, :] * (1.0 + 0.06 * skin_tex)
    alb = blend(alb, s.lips, smoothstep((1.0 - (u / s.mouth_w) ** 2 - ((v - s.mouth_y) / 0.055) ** 2) * 4))
    dark = 0.55 * g(v - s.mouth_y, 0.012, 0, 1) * (au < s.mouth_w * 0.85)  # mouth line
    dark = dark + 0.5 * g(au - 0.07, 0.035, v - 0.3, 0.02)  # nostrils
    eye_e = ((au - ex) / s.eye_w) ** 2 + ((v - ey) / s.eye_h) ** 2
    if p.blink:
        dark = dark + 0.5 * g(v - ey, 0.012, 0, 1) * (np.abs(au - ex) < s.eye_w)
    else:
        sclera = smoothstep((1.0 - eye_e) * 3)
        alb = blend(alb, np.array([0.92, 0.9, 0.87], np.float32), sclera)
        du = au - ex - p.gaze * np.sign(u)
        ir = np.sqrt(du * du + (v - ey) ** 2)
        alb = blend(alb, s.iris, smoothstep((s.eye_h * 0.95 - ir) * 60) * sclera)
        alb = blend(alb, np.zeros(3, np.float32), smoothstep((s.eye_h * 0.4 - ir) * 80) * sclera)
        dark = dark + 0.7 * g(np.sqrt(eye_e) - 1.0, 0.15, 0, 1) * (v < ey)  # lashes
    bu = (au - ex) / (s.eye_w * 1.5)
    brow = (np.abs(bu) < 1) * g(v - (ey - 0.17 + 0.05 * bu * bu), s.brow_t, 0, 1)
    alb = blend(alb, s.hair * 0.8, brow)
    alb = blend(alb, s.hair, smoothstep((s.hairline + 0.25 * u0 * u0 - v0) * 12))
    if s.glasses:
        ring = np.abs(np.sqrt(((au - ex) / (s.eye_w * 1.6)) ** 2 + ((v - ey) / (s.eye_h * 2.6)) ** 2) - 1.0)
        dark = dark + 0.9 * smoothstep((0.12 - ring) * 20)
    shade = (light.ambient + light.diffuse * ndl) * (1.0 - np.clip(dark, 0.0, 0.95))
    face = alb * shade[..., None] * light.color + (0.12 * spec)[..., None] * light.color

    # hair volume, neck and clothes behind the head (flat shading), composited back to front
    flat = light.ambient + light.diffuse * float(L[2])
    rgb = np.zeros((R, R, 3), np.float32)
    a = np.zeros((R, R), np.float32)
    layers = [
        (s.skin * 0.75 * flat * light.color, ((np.abs(u0) < 0.48) & (v0 > 0.5)).astype(np.float32)),  # neck
        ((s.hair * 0.5 + 0.2) * flat * light.color, ((v0 > 1.35) & (np.abs(u0) < 0.6 + (v0 - 1.35) * 2.0)).astype(np.float32)),
        (s.hair * flat * light.color, (((u0 / 1.1) ** 2 + ((v0 + 0.08) / 1.12) ** 2 < 1.0) & (v0 < -0.15)).astype(np.float32)),
        (face, alpha),
    ]
    for color, w in layers:
        rgb = rgb * (1.0 - w)[..., None] + color * w[..., None]
        a = a * (1.0 - w) + w
    depth = np.clip((z + 0.6) / 2.0, 0.0, 1.0) * (alpha > 0.5)
    return rgb.astype(np.float32), a.astype(np.float32), depth.astype(np.float32)


@dataclass
class PersonLayer:
    """A rendered person (eyes open, and closed once a frame blinks), moved per frame by a 2-D warp."""

    R: int
    subject: Subject
    pose: Pose
    light: Light
    skin_tex: np.ndarray
    _open: tuple[np.ndarray, ...] | None = None
    _closed: tuple[np.ndarray, ...] | None = None

    def layer(self, blink: bool) -> tuple[np.ndarray, ...]:
        if blink:
            if self._closed is None:
                p = Pose(**{**self.pose.__dict__, "blink": True})
                self._closed = render_person(self.R, self.subject, p, self.light, self.skin_tex)
            return self._closed
        if self._open is None:
            self._open = render_person(self.R, self.subject, self.pose, self.light, self.skin_tex)
        return self._open

    def frame(self, bg: np.ndarray, M: np.ndarray | None, blink: bool) -> tuple[np.ndarray, np.ndarray]:
        """Composite over ``bg`` after the small motion ``M`` (2x3 affine, None = still): (rgb, depth)."""
        rgb, a, depth = self.layer(blink)
        if M is not None:
            R = self.R
            rgba = cv2.warpAffine(np.dstack([rgb, a]), M, (R, R), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            depth = cv2.warpAffine(depth, M, (R, R), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            rgb, a = rgba[..., :3], rgba[..., 3]
        return bg * (1.0 - a)[..., None] + rgb, depth


def head_motion(rng: np.random.Generator, pose: Pose, R: int, amount: float = 1.0) -> np.ndarray:
    """Small head motion between frames: rotation / scale about the face centre plus a shift."""
    M = cv2.getRotationMatrix2D((pose.cx, pose.cy), rng.normal(0, 1.5 * amount), 1.0 + rng.normal(0, 0.015 * amount))
    M[:, 2] += rng.normal(0, 0.012 * R * amount, 2)
    return M.astype(np.float32)
