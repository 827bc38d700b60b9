"""Synthetic multi-domain face anti-spoofing benchmark (``anrl-ray convert synthetic``).

Four domains named after the real datasets, O (OULU-NPU), C (CASIA-FASD), I (Replay-Attack),
M (MSU-MFSD), that differ the way those do: who is filmed (skin tones), where (lighting,
backgrounds), with which camera (resolution, blur, noise, colour cast, vignetting, JPEG
quality) and with which attacks (printers, screens, supports). Everything is rendered with
numpy + OpenCV, deterministically for a seed (same seed -> same shard bytes):

* Live faces: a height field (ellipsoidal head + nose, eye sockets, brow ridge, cheeks, lips,
  chin) posed by yaw / pitch / roll and shaded with Lambert + Blinn-Phong under a per-video
  light; albedo with eyes (iris, pupil, blinks), brows, lips, nostrils, hair, glasses. The
  height field used for shading *is* the stored depth map (8-bit PNG, 255 = nearest), so the
  depth target is exact. Frames of a video differ by small head motion and blinks.
* Attacks are re-captures of a rendered live face of the same subject: ``print`` (halftone
  screens, reduced gamut and saturation, paper texture, flat lighting, bending, paper edge),
  ``replay`` (screen gamma and black level, sub-pixel grid, moire, glare, bezel) and ``cut``
  (a print with eye holes through which the live eyes show). The medium is placed in the
  scene by a homography (fixed support: static; hand-held: jitter, fingers), then goes
  through the same domain camera as live faces. Spoof rows store no depth.

Subjects are split train / dev / test disjointly per domain (50 / 20 / 30 %). The defaults
are sized for a 2-core machine (64 px crops, ~2,000 rows, seconds to generate); the knobs
make it bigger. ``benchmarks/synthetic_dg_gap.py`` checks that it is a domain-generalization
problem (in-domain easy, cross-domain clearly harder but far from chance).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from anrl_ray.data.format import MANIFEST, DatasetWriter
from anrl_ray.errors import UserError

GENERATOR_VERSION = 1
DOMAINS = ("O", "C", "I", "M")
DEFAULTS: dict[str, Any] = {"subjects": 20, "videos_per_subject": 2, "frames_per_video": 4, "img_size": 64}
SPLIT_FRACTIONS = {"train": 0.5, "dev": 0.2}  # the rest is test
RENDER_SCALE = 2  # faces are rendered at 2x the stored size, then captured (anti-aliasing, recapture patterns)

cv2.setNumThreads(1)


# --------------------------------------------------------------------------- domain profiles


@dataclass(frozen=True)
class Camera:
    """A capture device: everything between the scene and the stored JPEG."""

    name: str
    res_scale: tuple[float, float]  # sensor resolution / stored crop size (< 1: upsampled, soft)
    blur: tuple[float, float]  # optical blur sigma, stored pixels
    noise: tuple[float, float]  # sensor noise std (signal-dependent part), [0, 1] units
    jpeg: tuple[int, int]  # JPEG quality
    cast: tuple[float, float, float]  # RGB gains (white balance)
    vignette: float  # brightness loss at the corners
    gamma: tuple[float, float]  # tone curve exponent
    saturation: float = 1.0  # colour rendering of the sensor pipeline
    flare: float = 0.0  # veiling glare: lifts the blacks


@dataclass(frozen=True)
class Lighting:
    name: str
    ambient: tuple[float, float]
    diffuse: tuple[float, float]
    side: float  # max |x| of the light direction (0 frontal, 1 from the side)
    background: str  # plain | office | cluttered
    bg_level: tuple[float, float]  # background brightness


@dataclass(frozen=True)
class Instrument:
    """An attack instrument (a printer + paper, or a screen) and how it is presented."""

    kind: str  # print | replay | cut
    name: str
    scale: tuple[float, float]  # medium size / crop size (< 1: its edge shows in the crop)
    halftone_freq: float = 0.0  # print: screen frequency, cycles per render pixel
    halftone_amp: float = 0.0
    gamut: tuple[float, float] = (0.0, 1.0)  # print: paper black / white
    saturation: float = 1.0
    paper_noise: float = 0.0
    bend: float = 0.0  # print: bending (shading bands + warp)
    pixel_pitch: float = 0.0  # replay: render pixels per screen pixel
    grid_amp: float = 0.0
    moire_amp: float = 0.0
    moire_freq: tuple[float, float] = (0.015, 0.05)  # replay: moire frequency, cycles per render pixel
    screen_gamma: float = 1.0
    black: float = 0.0  # replay: backlight black level
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # screen white point / paper and ink colour
    glare: float = 0.0  # probability of a glare spot per video
    bezel: float = 0.0  # replay: probability that the bezel shows


@dataclass(frozen=True)
class Domain:
    name: str
    like: str  # the real dataset it imitates
    cameras: tuple[Camera, ...]
    lightings: tuple[Lighting, ...]
    attacks: dict[str, tuple[Instrument, ...]]  # attack type -> instruments (cycled over videos)
    skin_tone: tuple[float, float]  # 0 light .. 1 dark
    light_temp: tuple[float, float]  # -1 warm .. +1 cool
    hand_held: float  # probability that an attack medium is hand-held (else fixed support)


def _print(name: str, **kw: Any) -> Instrument:
    return Instrument(kind="print", name=name, **kw)


def _replay(name: str, **kw: Any) -> Instrument:
    return Instrument(kind="replay", name=name, **kw)


# Each domain has its own strong attack cues (what an in-domain model learns) and its own
# camera, which hides or mimics the other domains' cues (what makes cross-domain hard):
#   O: sharp phone cameras, subtle colour, fine halftone / pixel-grid texture is the tell;
#   C: soft, noisy, desaturated, flared cameras (live faces look "washed out"); prints and the
#      replay are strongly desaturated / blue with raised blacks, paper edges and bends;
#   I: low-res webcam; coarse halftone blotches and strong moire bands, bezels of small screens;
#   M: saturated phone / laptop colour; glossy prints with yellow paper, glare on the screens.
# Shared, weaker cues: reduced dynamic range, double blur (source camera), light mismatch.
PROFILES: dict[str, Domain] = {
    # OULU-NPU: six recent phones, three sessions (office light, dark, backlit), 2 printers + 2 displays.
    "O": Domain(
        name="O",
        like="OULU-NPU",
        cameras=tuple(
            Camera(f"phone{i}", (0.95, 1.2), (0.25, 0.45), (0.005, 0.012), (90, 96), c, 0.1, (0.95, 1.05))
            for i, c in enumerate([(1.02, 1.0, 0.97), (0.98, 1.0, 1.03), (1.04, 1.0, 0.95)])
        ),
        lightings=(
            Lighting("office", (0.45, 0.55), (0.45, 0.6), 0.5, "office", (0.55, 0.75)),
            Lighting("dark", (0.25, 0.35), (0.35, 0.45), 0.6, "office", (0.25, 0.4)),
            Lighting("backlit", (0.35, 0.45), (0.2, 0.3), 0.3, "office", (0.85, 1.0)),
        ),
        attacks={
            "print": (
                _print("printer1", scale=(1.08, 1.35), halftone_freq=0.3, halftone_amp=0.12, gamut=(0.04, 0.96),
                       saturation=0.92, paper_noise=0.03, glare=0.05),
                _print("printer2", scale=(1.08, 1.35), halftone_freq=0.25, halftone_amp=0.14, gamut=(0.05, 0.95),
                       saturation=0.9, paper_noise=0.03, glare=0.05),
            ),
            "replay": (
                _replay("display1", scale=(1.05, 1.3), pixel_pitch=2.6, grid_amp=0.14, moire_amp=0.02, screen_gamma=1.05,
                        black=0.03, glare=0.1, bezel=0.05),
                _replay("display2", scale=(1.05, 1.3), pixel_pitch=3.0, grid_amp=0.16, moire_amp=0.02, screen_gamma=1.08,
                        black=0.04, tint=(1.0, 1.0, 1.03), glare=0.1, bezel=0.05),
            ),
        },
        skin_tone=(0.0, 0.45),
        light_temp=(-0.3, 0.3),
        hand_held=0.5,
    ),
    # CASIA-FASD: low / normal / high quality cameras, warped prints, cut prints, iPad replay.
    "C": Domain(
        name="C",
        like="CASIA-FASD",
        cameras=(
            Camera("low", (0.35, 0.45), (0.9, 1.2), (0.03, 0.045), (50, 62), (1.08, 1.0, 0.86), 0.3, (0.9, 1.0), 0.75, 0.06),
            Camera("normal", (0.55, 0.7), (0.6, 0.8), (0.02, 0.03), (62, 72), (1.06, 1.0, 0.9), 0.2, (0.95, 1.05), 0.85, 0.04),
            Camera("high", (0.9, 1.1), (0.4, 0.55), (0.01, 0.015), (80, 88), (1.03, 1.0, 0.94), 0.1, (1.0, 1.1), 0.95, 0.02),
        ),
        lightings=(Lighting("indoor", (0.45, 0.6), (0.4, 0.55), 0.4, "plain", (0.6, 0.85)),),
        attacks={
            "print": (
                _print("warped", scale=(0.8, 1.1), halftone_freq=0.2, halftone_amp=0.06, gamut=(0.15, 0.85),
                       saturation=0.6, paper_noise=0.05, bend=0.15, glare=0.1),
            ),
            "cut": (
                _print("cut", scale=(0.9, 1.15), halftone_freq=0.2, halftone_amp=0.06, gamut=(0.15, 0.85),
                       saturation=0.6, paper_noise=0.05, bend=0.05),
            ),
            "replay": (
                _replay("ipad", scale=(0.85, 1.15), pixel_pitch=3.0, grid_amp=0.06, moire_amp=0.04, screen_gamma=1.35,
                        black=0.12, tint=(0.9, 1.0, 1.12), glare=0.3, bezel=0.35),
            ),
        },
        skin_tone=(0.15, 0.55),
        light_temp=(-0.6, -0.2),
        hand_held=0.8,
    ),
    # Replay-Attack: one webcam, controlled (uniform background) vs adverse (daylight, clutter), fixed vs hand support.
    "I": Domain(
        name="I",
        like="Idiap Replay-Attack",
        cameras=(Camera("webcam", (0.45, 0.55), (0.5, 0.8), (0.02, 0.03), (70, 80), (0.9, 1.0, 1.12), 0.25, (0.9, 1.0)),),
        lightings=(
            Lighting("controlled", (0.55, 0.65), (0.35, 0.45), 0.2, "plain", (0.5, 0.65)),
            Lighting("adverse", (0.3, 0.4), (0.55, 0.75), 0.9, "cluttered", (0.45, 0.8)),
        ),
        attacks={
            "print": (
                _print("hardcopy", scale=(0.9, 1.2), halftone_freq=0.12, halftone_amp=0.14, gamut=(0.08, 0.92),
                       saturation=0.85, paper_noise=0.03, glare=0.1),
            ),
            "replay": (
                _replay("mobile", scale=(0.8, 1.05), pixel_pitch=1.8, grid_amp=0.05, moire_amp=0.16, screen_gamma=1.2,
                        black=0.07, tint=(0.96, 1.0, 1.08), glare=0.3, bezel=0.6),
                _replay("highdef", scale=(0.95, 1.25), pixel_pitch=2.4, grid_amp=0.05, moire_amp=0.12, screen_gamma=1.1,
                        black=0.05, tint=(0.98, 1.0, 1.03), glare=0.3, bezel=0.25),
            ),
        },
        skin_tone=(0.0, 0.9),
        light_temp=(0.1, 0.5),
        hand_held=0.5,
    ),
    # MSU-MFSD: laptop webcam and Android phone, glossy A3 prints, iPad and iPhone replay.
    "M": Domain(
        name="M",
        like="MSU-MFSD",
        cameras=(
            Camera("laptop", (0.6, 0.75), (0.5, 0.7), (0.015, 0.025), (75, 85), (1.1, 0.97, 0.9), 0.2, (0.95, 1.05), 1.05),
            Camera("android", (0.85, 1.0), (0.35, 0.5), (0.01, 0.018), (85, 92), (1.03, 1.0, 0.97), 0.15, (1.0, 1.1), 1.1),
        ),
        lightings=(Lighting("indoor", (0.4, 0.55), (0.4, 0.6), 0.6, "office", (0.5, 0.8)),),
        attacks={
            "print": (
                _print("a3", scale=(1.05, 1.3), halftone_freq=0.3, halftone_amp=0.05, gamut=(0.1, 0.9),
                       saturation=0.8, paper_noise=0.025, tint=(1.04, 1.0, 0.82), glare=0.5),
            ),
            "replay": (
                _replay("ipad_air", scale=(0.95, 1.25), pixel_pitch=2.5, grid_amp=0.05, moire_amp=0.04, screen_gamma=1.2,
                        black=0.07, tint=(1.0, 1.0, 1.05), glare=0.7, bezel=0.25),
                _replay("iphone", scale=(0.85, 1.1), pixel_pitch=1.7, grid_amp=0.06, moire_amp=0.05, screen_gamma=1.3,
                        black=0.09, tint=(0.97, 1.0, 1.07), glare=0.7, bezel=0.5),
            ),
        },
        skin_tone=(0.0, 0.9),
        light_temp=(-0.2, 0.2),
        hand_held=0.6,
    ),
}
_DOMAIN_CODE = {d: i for i, d in enumerate(DOMAINS)}
_KIND_CODE = {"live": 0, "print": 1, "replay": 2, "cut": 3}


# --------------------------------------------------------------------------- subjects and videos


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


def _subject(rng: np.random.Generator, dom: Domain) -> Subject:
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
    ambient: float
    diffuse: float
    direction: np.ndarray  # unit vector towards the light (x right, y down, z to the camera)
    color: np.ndarray  # RGB


def _light(rng: np.random.Generator, dom: Domain, lighting: Lighting) -> Light:
    d = np.array([rng.uniform(-lighting.side, lighting.side), rng.uniform(-0.5, 0.1), 1.0], np.float32)
    temp = rng.uniform(*dom.light_temp)
    color = np.array([1.0 - 0.12 * temp, 1.0, 1.0 + 0.12 * temp], np.float32)
    return Light(rng.uniform(*lighting.ambient), rng.uniform(*lighting.diffuse), d / np.linalg.norm(d), color)


def _video_pose(rng: np.random.Generator, R: int) -> Pose:
    return Pose(
        cx=R * (0.5 + rng.uniform(-0.04, 0.04)),
        cy=R * (0.53 + rng.uniform(-0.04, 0.03)),
        a=R * rng.uniform(0.29, 0.35),
        roll=rng.uniform(-0.12, 0.12),
        yaw=rng.uniform(-0.3, 0.3),
        pitch=rng.uniform(-0.15, 0.15),
        gaze=rng.uniform(-0.03, 0.03),
    )


# --------------------------------------------------------------------------- rendering


class _Grid:
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


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _blend(base: np.ndarray, color: np.ndarray, w: np.ndarray) -> np.ndarray:
    return base + (color - base) * w[..., None]


def _smooth_field(rng: np.random.Generator, R: int, k: int, channels: int = 1) -> np.ndarray:
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
    xx, yy = _Grid.get(R)
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
    alb = _blend(alb, s.lips, _smoothstep((1.0 - (u / s.mouth_w) ** 2 - ((v - s.mouth_y) / 0.055) ** 2) * 4))
    dark = 0.55 * g(v - s.mouth_y, 0.012, 0, 1) * (au < s.mouth_w * 0.85)  # mouth line
    dark = dark + 0.5 * g(au - 0.07, 0.035, v - 0.3, 0.02)  # nostrils
    eye_e = ((au - ex) / s.eye_w) ** 2 + ((v - ey) / s.eye_h) ** 2
    if p.blink:
        dark = dark + 0.5 * g(v - ey, 0.012, 0, 1) * (np.abs(au - ex) < s.eye_w)
    else:
        sclera = _smoothstep((1.0 - eye_e) * 3)
        alb = _blend(alb, np.array([0.92, 0.9, 0.87], np.float32), sclera)
        du = au - ex - p.gaze * np.sign(u)
        ir = np.sqrt(du * du + (v - ey) ** 2)
        alb = _blend(alb, s.iris, _smoothstep((s.eye_h * 0.95 - ir) * 60) * sclera)
        alb = _blend(alb, np.zeros(3, np.float32), _smoothstep((s.eye_h * 0.4 - ir) * 80) * sclera)
        dark = dark + 0.7 * g(np.sqrt(eye_e) - 1.0, 0.15, 0, 1) * (v < ey)  # lashes
    bu = (au - ex) / (s.eye_w * 1.5)
    brow = (np.abs(bu) < 1) * g(v - (ey - 0.17 + 0.05 * bu * bu), s.brow_t, 0, 1)
    alb = _blend(alb, s.hair * 0.8, brow)
    alb = _blend(alb, s.hair, _smoothstep((s.hairline + 0.25 * u0 * u0 - v0) * 12))
    if s.glasses:
        ring = np.abs(np.sqrt(((au - ex) / (s.eye_w * 1.6)) ** 2 + ((v - ey) / (s.eye_h * 2.6)) ** 2) - 1.0)
        dark = dark + 0.9 * _smoothstep((0.12 - ring) * 20)
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


def _motion(rng: np.random.Generator, pose: Pose, R: int, amount: float = 1.0) -> np.ndarray:
    """Small head motion between frames: rotation / scale about the face centre plus a shift."""
    M = cv2.getRotationMatrix2D((pose.cx, pose.cy), rng.normal(0, 1.5 * amount), 1.0 + rng.normal(0, 0.015 * amount))
    M[:, 2] += rng.normal(0, 0.012 * R * amount, 2)
    return M.astype(np.float32)


def render_background(rng: np.random.Generator, R: int, lighting: Lighting) -> np.ndarray:
    """A static scene behind the subject: smooth wall colour, plus furniture/clutter rectangles."""
    level = rng.uniform(*lighting.bg_level)
    base = rng.uniform(0.3, 0.9, 3).astype(np.float32)
    bg = base[None, None, :] * (1.0 + 0.15 * _smooth_field(rng, R, 3, 3))
    n_rects = {"plain": 0, "office": 3, "cluttered": 9}[lighting.background]
    for _ in range(n_rects):
        x0, y0 = rng.integers(0, R, 2)
        w, h = rng.integers(R // 10, R // 2, 2)
        color = rng.uniform(0.05, 1.0, 3).astype(np.float32)
        bg[y0 : y0 + h, x0 : x0 + w] = color
    if lighting.background == "cluttered":
        bg = bg * (1.0 + 0.1 * _smooth_field(rng, R, 12, 1))
    return np.clip(bg * level, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- attacks (re-capture)


def _halftone(img: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Amplitude-modulated halftone screens, one angle per ink (C, M, Y); strongest in mid-tones."""
    R = img.shape[0]
    xx, yy = _Grid.get(R)
    f = 2 * math.pi * inst.halftone_freq * rng.uniform(0.95, 1.05)
    out = np.empty_like(img)
    for c, angle in enumerate((15.0, 75.0, 0.0)):
        t = math.radians(angle + rng.uniform(-3, 3))
        a = np.cos(f * (xx * math.cos(t) + yy * math.sin(t)))
        b = np.cos(f * (-xx * math.sin(t) + yy * math.cos(t)))
        x = img[..., c]
        out[..., c] = x + inst.halftone_amp * (a * b) * 4.0 * x * (1.0 - x)
    return out


def _print_medium(src: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """What a printed photo reflects: reduced saturation and gamut, halftone, paper texture."""
    x = np.clip(src, 0, 1)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + inst.saturation * (x - gray)
    x = _halftone(x, inst, rng)
    lo, hi = inst.gamut
    x = lo + (hi - lo) * np.clip(x, 0, 1)
    ink = np.asarray(inst.tint, np.float32) * (1.0 + rng.uniform(-0.04, 0.04, 3).astype(np.float32))
    paper = 1.0 + inst.paper_noise * cv2.GaussianBlur(rng.standard_normal(x.shape[:2]).astype(np.float32), (0, 0), 0.7)
    return (x * ink * paper[..., None]).astype(np.float32)


def _screen_medium(src: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """What a screen emits: gamma, black level, tint and the sub-pixel grid."""
    R = src.shape[0]
    xx, yy = _Grid.get(R)
    x = np.clip(src, 0, 1) ** (inst.screen_gamma * rng.uniform(0.95, 1.05))
    x = inst.black + (1.0 - inst.black) * x
    x = x * np.asarray(inst.tint, np.float32)
    pitch = inst.pixel_pitch * rng.uniform(0.9, 1.1)
    rows = 1.0 - inst.grid_amp * 0.5 * (1.0 - np.cos(2 * math.pi * yy / pitch))
    for c in range(3):  # vertical R, G, B stripes
        cols = 1.0 - inst.grid_amp * (1.0 - np.cos(2 * math.pi * (xx / pitch - c / 3.0))) * 0.5
        x[..., c] *= cols * rows
    return x.astype(np.float32)


def _medium_homography(rng: np.random.Generator, R: int, scale: float, jitter: float) -> np.ndarray:
    """Medium coordinates -> frame coordinates: scale about the centre, tilt, rotation, shift."""
    c = R / 2
    rot = rng.normal(0, 0.03 + jitter * 0.5)
    t = rng.normal(0, R * (0.01 + jitter), 2)
    cs, sn = math.cos(rot) * scale, math.sin(rot) * scale
    A = np.array([[cs, -sn, c + t[0] - c * cs + c * sn], [sn, cs, c + t[1] - c * sn - c * cs], [0, 0, 1]], np.float64)
    P = np.eye(3)
    P[2, :2] = rng.normal(0, 0.0006, 2) * 256 / R  # perspective tilt of the medium
    C, Ci = np.eye(3), np.eye(3)
    C[:2, 2], Ci[:2, 2] = -c, c
    return A @ (Ci @ P @ C)


def _glare(R: int, rng: np.random.Generator, amp: float) -> np.ndarray:
    xx, yy = _Grid.get(R)
    px, py = rng.uniform(0.1, 0.9, 2) * R
    sig = rng.uniform(0.08, 0.25) * R
    return (amp * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sig * sig))).astype(np.float32)


@dataclass
class _AttackVideo:
    """Per-video state of an attack: the instrument, its placement and the re-capture scene."""

    inst: Instrument
    scale: float
    hand: bool
    bend_phase: float
    glare: np.ndarray | None
    edge: float  # paper margin / bezel width, medium pixels
    edge_color: np.ndarray
    moire: tuple[float, float, float]  # fx, fy (cycles/px), phase
    finger: tuple[float, float, float] | None  # x, y, radius
    gradient: tuple[float, float]  # illumination gradient across the medium
    base_h: np.ndarray


def _attack_video(rng: np.random.Generator, inst: Instrument, dom: Domain, R: int) -> _AttackVideo:
    scale = rng.uniform(*inst.scale)
    hand = bool(rng.random() < dom.hand_held)
    if inst.kind == "replay":
        shows = rng.random() < inst.bezel
        edge = rng.uniform(0.03, 0.08) * R if shows else 0.0
        edge_color = np.array([0.04, 0.04, 0.05], np.float32) * rng.uniform(0.5, 2.0)
    else:
        edge = rng.uniform(0.02, 0.06) * R
        edge_color = np.array([0.9, 0.9, 0.88], np.float32)
    glare = _glare(R, rng, rng.uniform(0.15, 0.4)) if rng.random() < inst.glare else None
    ang = rng.uniform(0, math.pi)
    fm = rng.uniform(*inst.moire_freq)
    finger = None
    if hand and rng.random() < 0.4:
        side = rng.integers(4)
        pos = rng.uniform(0.2, 0.8) * R
        x, y = [(pos, R * 0.98), (pos, R * 0.02), (R * 0.02, pos), (R * 0.98, pos)][side]
        finger = (x, y, rng.uniform(0.06, 0.12) * R)
    return _AttackVideo(
        inst=inst,
        scale=scale,
        hand=hand,
        bend_phase=rng.uniform(0, 2 * math.pi),
        glare=glare,
        edge=edge,
        edge_color=edge_color,
        moire=(fm * math.cos(ang), fm * math.sin(ang), rng.uniform(0, 2 * math.pi)),
        finger=finger,
        gradient=tuple(rng.uniform(-0.15, 0.15, 2)),
        base_h=_medium_homography(rng, R, scale, 0.0),
    )


def recapture(
    medium: np.ndarray,
    av: _AttackVideo,
    scene: np.ndarray,
    light: Light,
    rng: np.random.Generator,
    live_eyes: tuple[np.ndarray, np.ndarray] | None = None,
    skin: np.ndarray | None = None,
) -> np.ndarray:
    """Place a print / screen in the scene in front of the camera (one frame)."""
    R = medium.shape[0]
    xx, yy = _Grid.get(R)
    inst = av.inst
    med = medium.copy()
    if av.edge > 0:  # paper margin or screen bezel, inside the medium's outline
        border = np.minimum(np.minimum(xx, R - xx), np.minimum(yy, R - yy)) < av.edge
        med[border] = av.edge_color
    if inst.kind in ("print", "cut") and inst.bend > 0:  # bent paper: wavy rows, shading bands
        shift = inst.bend * R * 0.05 * np.sin(2 * math.pi * xx / R + av.bend_phase)
        med = cv2.remap(med, xx, (yy + shift).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        med = med * (1.0 + inst.bend * np.cos(2 * math.pi * xx / R + av.bend_phase))[..., None]
    if live_eyes is not None:  # cut photo: the live eyes show through the holes, holes have dark rims
        eyes, hole = live_eyes
        rim = cv2.GaussianBlur(hole, (0, 0), 1.2) - hole
        med = _blend(med, eyes, hole) * (1.0 - 1.5 * np.clip(rim, 0, 1))[..., None]
    Hm = av.base_h
    if av.hand:
        Hm = _medium_homography(rng, R, 1.0, 0.012) @ Hm
    warped = cv2.warpPerspective(med, Hm, (R, R), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpPerspective(np.ones((R, R), np.float32), Hm, (R, R), flags=cv2.INTER_LINEAR)
    gx, gy = av.gradient
    ramp = 1.0 + gx * (xx / R - 0.5) * 2 + gy * (yy / R - 0.5) * 2
    if inst.kind == "replay":  # emissive, plus faint reflections of the room
        fx, fy, ph = av.moire
        moire = 1.0 + inst.moire_amp * np.cos(2 * math.pi * (fx * xx + fy * yy) + ph)
        img = warped * (rng.uniform(0.9, 1.1) * moire)[..., None] + 0.04 * light.ambient * ramp[..., None]
    else:  # reflective flat sheet under the room light: no 3-D shading, only a smooth gradient
        illum = (light.ambient + light.diffuse * float(light.direction[2])) * ramp
        img = warped * illum[..., None] * light.color
    if av.glare is not None:
        img = img + av.glare[..., None] * light.color
    out = _blend(scene, img, mask)
    if av.finger is not None and skin is not None:
        x, y, r = av.finger
        d = np.sqrt(((xx - x) / r) ** 2 + ((yy - y) / (1.6 * r)) ** 2)
        shade = light.ambient + light.diffuse * 0.7
        out = _blend(out, skin * shade * light.color, _smoothstep((1.0 - d) * 4))
    return out


def _source_camera(img: np.ndarray, sigma: float) -> np.ndarray:
    """The camera that took the attacker's photo / video (a good one: only its optical blur)."""
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _eye_holes(R: int, s: Subject, p: Pose) -> np.ndarray:
    """Mask (R, R) of the two eye holes of a cut photo, in the photo's coordinates."""
    xx, yy = _Grid.get(R)
    b = p.a * s.aspect
    cr, sr = math.cos(p.roll), math.sin(p.roll)
    X, Y = xx - p.cx, yy - p.cy
    u = (cr * X + sr * Y) / p.a - math.sin(p.yaw) * 0.6
    v = (-sr * X + cr * Y) / b - math.sin(p.pitch) * 0.6
    e = ((np.abs(u) - s.eye_x) / (s.eye_w * 1.4)) ** 2 + ((v - s.eye_y) / (s.eye_h * 2.2)) ** 2
    return _smoothstep((1.0 - e) * 3).astype(np.float32)


# --------------------------------------------------------------------------- camera


@dataclass
class _CameraVideo:
    cam: Camera
    res: float
    blur: float
    noise: float
    jpeg: int
    gain: np.ndarray
    gamma: float


def _camera_video(rng: np.random.Generator, cam: Camera) -> _CameraVideo:
    return _CameraVideo(
        cam=cam,
        res=rng.uniform(*cam.res_scale),
        blur=rng.uniform(*cam.blur),
        noise=rng.uniform(*cam.noise),
        jpeg=int(rng.integers(cam.jpeg[0], cam.jpeg[1] + 1)),
        gain=np.asarray(cam.cast, np.float32) * rng.uniform(0.92, 1.08) * (1 + rng.uniform(-0.02, 0.02, 3)),
        gamma=rng.uniform(*cam.gamma),
    )


def capture(scene: np.ndarray, cv: _CameraVideo, size: int, rng: np.random.Generator) -> bytes:
    """Scene (R, R, 3) -> stored JPEG of ``size`` px: white balance, vignetting, sensor, optics, codec."""
    img = scene * cv.gain * (1.0 - cv.cam.vignette * _Grid.radius2(scene.shape[0]))[..., None]
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


def _depth_png(depth: np.ndarray, size: int) -> bytes:
    d = cv2.resize(depth, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.clip(d * 255.0 + 0.5, 0, 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------- one domain


def split_subjects(n: int, rng: np.random.Generator) -> dict[int, str]:
    """Disjoint train / dev / test subject sets (50 / 20 / 30 %, each at least one subject)."""
    n_train = max(1, round(n * SPLIT_FRACTIONS["train"]))
    n_dev = max(1, round(n * SPLIT_FRACTIONS["dev"]))
    n_train = min(n_train, n - n_dev - 1)
    order = rng.permutation(n)
    return {int(s): ("train" if i < n_train else "dev" if i < n_train + n_dev else "test") for i, s in enumerate(order)}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def domain_rows(
    domain: str,
    *,
    seed: int,
    subjects: int,
    videos_per_subject: int,
    frames_per_video: int,
    img_size: int,
    profile: Domain | None = None,
) -> Iterator[dict[str, Any]]:
    """Every row (``DatasetWriter.add`` keyword arguments) of one synthetic domain, in a fixed order.

    ``profile`` replaces the built-in ``PROFILES[domain]`` (experiments with the generator).
    """
    dom = profile or PROFILES[domain]
    R = img_size * RENDER_SCALE
    dcode = _DOMAIN_CODE[domain]
    splits = split_subjects(subjects, _rng(seed, dcode, 999_999))
    kinds = ["live", *dom.attacks]
    for si in range(subjects):
        subj = _subject(_rng(seed, dcode, si), dom)
        sid = f"{domain}{si:03d}"
        for kind in kinds:
            for vi in range(videos_per_subject):
                rng = _rng(seed, dcode, si, _KIND_CODE[kind], vi)
                vid = f"{sid}_{kind}_{vi}"
                frames = _video(rng, dom, subj, kind, vi + si, frames_per_video, img_size)
                for fi, (image, depth, attack_name) in enumerate(frames):
                    yield {
                        "image": image,
                        "image_format": "jpeg",
                        "depth": depth,
                        "label": 0 if kind == "live" else 1,
                        "attack_type": kind,
                        "subject_id": sid,
                        "video_id": vid,
                        "frame_index": fi,
                        "split": splits[si],
                        "source_path": f"synthetic://{domain}/{sid}/{kind}/{attack_name}/{vi}/{fi}",
                    }


def _video(
    rng: np.random.Generator, dom: Domain, subj: Subject, kind: str, cycle: int, n_frames: int, size: int
) -> list[tuple[bytes, bytes | None, str]]:
    """Frames of one video: (JPEG bytes, depth PNG bytes or None, instrument name)."""
    R = size * RENDER_SCALE
    lighting = dom.lightings[rng.integers(len(dom.lightings))]
    cam = _camera_video(rng, dom.cameras[rng.integers(len(dom.cameras))])
    light = _light(rng, dom, lighting)
    scene = render_background(rng, R, lighting)
    skin_tex = _smooth_field(rng, R, 6)
    out: list[tuple[bytes, bytes | None, str]] = []
    if kind == "live":
        person = PersonLayer(R, subj, _video_pose(rng, R), light, skin_tex)
        for _ in range(n_frames):
            rgb, depth = person.frame(scene, _motion(rng, person.pose, R), blink=bool(rng.random() < 0.2))
            out.append((capture(rgb, cam, size, rng), _depth_png(depth, size), "live"))
        return out
    inst = dom.attacks[kind][cycle % len(dom.attacks[kind])]
    av = _attack_video(rng, inst, dom, R)
    # The attacker's source: the same subject filmed earlier (its own light and background) with a good camera.
    src_lighting = PROFILES["O"].lightings[0]
    src_light = _light(rng, dom, src_lighting)
    src_bg = render_background(rng, R, src_lighting)
    src_pose = _video_pose(rng, R)
    src_pose.a /= av.scale  # the face detector crops the face: keep its size in the crop
    src_pose.cx = R / 2 + (src_pose.cx - R / 2) / av.scale
    src_pose.cy = R / 2 + (src_pose.cy - R / 2) / av.scale
    source = PersonLayer(R, subj, src_pose, src_light, _smooth_field(rng, R, 6))
    src_blur = rng.uniform(0.5, 1.0)  # the source camera's optics: attacks are imaged twice
    still = None
    if kind in ("print", "cut"):
        still = _print_medium(_source_camera(source.frame(src_bg, None, blink=False)[0], src_blur), inst, rng)
    behind = holes = None
    if kind == "cut":  # the attacker's own face right behind the photo, eyes aligned with the holes
        behind = PersonLayer(R, subj, src_pose, light, skin_tex)
        holes = _eye_holes(R, subj, src_pose)
    for _ in range(n_frames):
        if still is not None:
            medium = still
        else:  # a replayed video moves
            photo, _ = source.frame(src_bg, _motion(rng, src_pose, R), blink=bool(rng.random() < 0.2))
            medium = _screen_medium(_source_camera(photo, src_blur), inst, rng)
        eyes = None
        if behind is not None:
            eyes = (behind.frame(scene, None, blink=bool(rng.random() < 0.3))[0], holes)
        frame = recapture(medium, av, scene, light, rng, live_eyes=eyes, skin=subj.skin)
        out.append((capture(frame, cam, size, rng), None, inst.name))
    return out


# --------------------------------------------------------------------------- entry points


def _check_args(domains: Sequence[str], subjects: int, videos_per_subject: int, frames_per_video: int, img_size: int) -> None:
    unknown = [d for d in domains if d not in PROFILES]
    if unknown or not domains:
        raise UserError(f"--domains: unknown domain(s) {unknown or '(none given)'}; choose from {', '.join(DOMAINS)}")
    if len(set(domains)) != len(domains):
        raise UserError(f"--domains: {list(domains)} repeats a domain")
    if subjects < 3:
        raise UserError(f"--subjects {subjects}: need at least 3 (one each for train, dev and test)")
    if videos_per_subject < 1 or frames_per_video < 1:
        raise UserError("--videos-per-subject and --frames-per-video must be at least 1")
    if img_size < 16 or img_size % 8:
        raise UserError(f"--img-size {img_size}: must be a multiple of 8 and at least 16")


def generate(
    out_dir: str | Path,
    *,
    seed: int = 0,
    domains: Sequence[str] = DOMAINS,
    subjects: int = DEFAULTS["subjects"],
    videos_per_subject: int = DEFAULTS["videos_per_subject"],
    frames_per_video: int = DEFAULTS["frames_per_video"],
    img_size: int = DEFAULTS["img_size"],
    overwrite: bool = False,
    profiles: dict[str, Domain] | None = None,
) -> dict[str, Any]:
    """Write the synthetic benchmark: one dataset folder per domain (``out_dir/O``, ...).

    Per subject: ``videos_per_subject`` live videos and ``videos_per_subject`` videos of each of
    the domain's attack types (O, I, M: print + replay; C: print + cut + replay), each of
    ``frames_per_video`` frames of ``img_size`` px. Returns a summary (rows, seconds, frames/s).
    ``profiles`` overrides domain profiles (experiments; recorded as non-default in the manifest).
    """
    domains = list(domains)
    _check_args(domains, subjects, videos_per_subject, frames_per_video, img_size)
    out = Path(out_dir)
    if not overwrite:
        existing = [str(out / d) for d in domains if (out / d).exists()]
        if existing:
            raise UserError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose another --out")
    args = {
        "seed": seed,
        "subjects": subjects,
        "videos_per_subject": videos_per_subject,
        "frames_per_video": frames_per_video,
        "img_size": img_size,
        "generator_version": GENERATOR_VERSION,
    }
    profiles = profiles or {}
    if profiles:
        args["custom_profiles"] = sorted(profiles)
    summary: dict[str, Any] = {"out": str(out.resolve()), **args, "domains": {}}
    t_all = time.perf_counter()
    total = 0
    for d in domains:
        t0 = time.perf_counter()
        n = 0
        with DatasetWriter(out / d, domain=d, converter="synthetic", converter_args={**args, "like": PROFILES[d].like},
                           overwrite=overwrite) as w:
            for row in domain_rows(d, seed=seed, subjects=subjects, videos_per_subject=videos_per_subject,
                                   frames_per_video=frames_per_video, img_size=img_size, profile=profiles.get(d)):
                w.add(**row)
                n += 1
        total += n
        summary["domains"][d] = {"rows": n, "seconds": round(time.perf_counter() - t0, 2), "like": PROFILES[d].like}
    seconds = time.perf_counter() - t_all
    summary["rows"] = total
    summary["seconds"] = round(seconds, 2)
    summary["frames_per_second"] = round(total / max(seconds, 1e-9), 1)
    return summary


def default_cache_dir() -> Path:
    """Where the default benchmark is cached: ``$ANRL_RAY_CACHE`` or ``~/.cache/anrl_ray``."""
    return Path(os.environ.get("ANRL_RAY_CACHE") or Path.home() / ".cache" / "anrl_ray")


def ensure_default_benchmark(cache_dir: str | Path | None = None, *, seed: int = 0) -> str:
    """Path of the default synthetic benchmark, generated on first use (safe under concurrent callers)."""
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    name = f"synthetic-v{GENERATOR_VERSION}-seed{seed}-" + "-".join(f"{k}{v}" for k, v in DEFAULTS.items())
    root = base / name
    if all((root / d / MANIFEST).is_file() for d in DOMAINS):
        return str(root.resolve())
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be generating it: wait, then re-check
        missing = [d for d in DOMAINS if not (root / d / MANIFEST).is_file()]
        if missing:
            generate(root, seed=seed, domains=DOMAINS, overwrite=True, **DEFAULTS)
    return str(root.resolve())


def _cli(args: argparse.Namespace) -> int:
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    summary = generate(
        args.out,
        seed=args.seed,
        domains=domains,
        subjects=args.subjects,
        videos_per_subject=args.videos_per_subject,
        frames_per_video=args.frames_per_video,
        img_size=args.img_size,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``synthetic`` to the ``anrl-ray convert`` subcommands."""
    p = subparsers.add_parser(
        "synthetic",
        help="generate the synthetic 4-domain benchmark (O, C, I, M)",
        description="Render a synthetic face anti-spoofing benchmark: one Parquet dataset per domain under --out.",
    )
    p.add_argument("--out", required=True, help="output data root; domains go to OUT/O, OUT/C, OUT/I, OUT/M")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated subset of O,C,I,M")
    p.add_argument("--subjects", type=int, default=DEFAULTS["subjects"], help="subjects per domain (split 50/20/30)")
    p.add_argument("--videos-per-subject", type=int, default=DEFAULTS["videos_per_subject"],
                   help="live videos per subject, and videos per subject of each attack type")
    p.add_argument("--frames-per-video", type=int, default=DEFAULTS["frames_per_video"])
    p.add_argument("--img-size", type=int, default=DEFAULTS["img_size"], help="stored crop size in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace existing domain folders")
    p.set_defaults(func=_cli)
