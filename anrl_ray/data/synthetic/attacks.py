"""Presentation attacks: print and screen media, and their re-capture in front of the camera.

``print`` (halftone screens, reduced gamut and saturation, paper texture, flat lighting, bending,
paper edge), ``replay`` (screen gamma and black level, sub-pixel grid, moire, glare, bezel) and
``cut`` (a print with eye holes through which the live eyes show). The medium is placed in the
scene by a homography (fixed support: static; hand-held: jitter, fingers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from anrl_ray.data.synthetic.domains import Domain, Instrument
from anrl_ray.data.synthetic.render import Grid, Light, Pose, Subject, blend, smoothstep


def _halftone(img: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Amplitude-modulated halftone screens, one angle per ink (C, M, Y); strongest in mid-tones."""
    R = img.shape[0]
    xx, yy = Grid.get(R)
    f = 2 * math.pi * inst.halftone_freq * rng.uniform(0.95, 1.05)
    out = np.empty_like(img)
    for c, angle in enumerate((15.0, 75.0, 0.0)):
        t = math.radians(angle + rng.uniform(-3, 3))
        a = np.cos(f * (xx * math.cos(t) + yy * math.sin(t)))
        b = np.cos(f * (-xx * math.sin(t) + yy * math.cos(t)))
        x = img[..., c]
        out[..., c] = x + inst.halftone_amp * (a * b) * 4.0 * x * (1.0 - x)
    return out


def print_medium(src: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
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


def screen_medium(src: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """What a screen emits: gamma, black level, tint and the sub-pixel grid."""
    R = src.shape[0]
    xx, yy = Grid.get(R)
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
    xx, yy = Grid.get(R)
    px, py = rng.uniform(0.1, 0.9, 2) * R
    sig = rng.uniform(0.08, 0.25) * R
    return (amp * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sig * sig))).astype(np.float32)


@dataclass
class AttackVideo:
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


def sample_attack(rng: np.random.Generator, inst: Instrument, dom: Domain, R: int) -> AttackVideo:
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
    return AttackVideo(
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
    av: AttackVideo,
    scene: np.ndarray,
    light: Light,
    rng: np.random.Generator,
    live_eyes: tuple[np.ndarray, np.ndarray] | None = None,
    skin: np.ndarray | None = None,
) -> np.ndarray:
    """Place a print / screen in the scene in front of the camera (one frame)."""
    R = medium.shape[0]
    xx, yy = Grid.get(R)
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
        med = blend(med, eyes, hole) * (1.0 - 1.5 * np.clip(rim, 0, 1))[..., None]
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
    out = blend(scene, img, mask)
    if av.finger is not None and skin is not None:
        x, y, r = av.finger
        d = np.sqrt(((xx - x) / r) ** 2 + ((yy - y) / (1.6 * r)) ** 2)
        shade = light.ambient + light.diffuse * 0.7
        out = blend(out, skin * shade * light.color, smoothstep((1.0 - d) * 4))
    return out


def source_camera(img: np.ndarray, sigma: float) -> np.ndarray:
    """The camera that took the attacker's photo / video (a good one: only its optical blur)."""
    return cv2.GaussianBlur(img, (0, 0), sigma)


def eye_holes(R: int, s: Subject, p: Pose) -> np.ndarray:
    """Mask (R, R) of the two eye holes of a cut photo, in the photo's coordinates."""
    xx, yy = Grid.get(R)
    b = p.a * s.aspect
    cr, sr = math.cos(p.roll), math.sin(p.roll)
    X, Y = xx - p.cx, yy - p.cy
    u = (cr * X + sr * Y) / p.a - math.sin(p.yaw) * 0.6
    v = (-sr * X + cr * Y) / b - math.sin(p.pitch) * 0.6
    e = ((np.abs(u) - s.eye_x) / (s.eye_w * 1.4)) ** 2 + ((v - s.eye_y) / (s.eye_h * 2.2)) ** 2
    return smoothstep((1.0 - e) * 3).astype(np.float32)

