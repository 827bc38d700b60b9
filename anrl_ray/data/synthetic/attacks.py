"""Presentation attacks: print and screen media, and their re-capture in front of the camera.

``print`` (halftone screens, reduced gamut and saturation, paper texture, flat lighting, bending,
paper edge), ``replay`` (screen gamma and black level, sub-pixel grid, moire, glare, bezel) and
``cut`` (a print with eye holes through which the live eyes show). The medium is placed in the
room by a homography (fixed support: static; hand-held: jitter, fingers).

With ``effects=False`` (:func:`sample_attack`) the medium is an ideal copy of the source image:
no halftone, paper texture, gamut / saturation / tint, screen gamma / black level / pixel grid,
moire, bending, eye holes, glare, bezel or paper edge, fingers or room-light shading, and large
enough that its outline stays outside the crop. Only the geometry of the re-capture remains
(placement, hand jitter): a diagnostic that scene content does not tell spoof from live.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from anrl_ray.data.synthetic.domains import Domain, Instrument
from anrl_ray.data.synthetic.render import Grid, Light, Pose, Subject, blend, smoothstep

FULL_COVER_SCALE = 1.15  # without instrument effects the medium is at least this large: its outline stays out of the crop


@dataclass
class AttackVideo:
    """Per-video presentation of an instrument (scalars; positions and sizes as fractions of the crop)."""

    inst: Instrument
    effects: bool  # False: an ideal, borderless copy of the source (see the module docstring)
    scale: float  # medium size / crop size
    hand: bool  # hand-held (jitters from frame to frame) or on a fixed support
    rot: float  # placement of the medium: rotation (rad), shift, perspective tilt
    shift: tuple[float, float]
    tilt: tuple[float, float]
    edge: float  # paper margin / bezel width (0: none)
    edge_shade: float  # bezel brightness factor
    glare: tuple[float, float, float, float] | None  # x, y, sigma, amplitude
    finger: tuple[float, float, float] | None  # x, y, radius
    moire: tuple[float, float, float]  # fx, fy (cycles per render pixel), phase
    gradient: tuple[float, float]  # room-light gradient across the medium
    bend_phase: float
    halftone: tuple[float, float, float, float]  # frequency factor, C / M / Y screen angle offsets (degrees)
    ink: tuple[float, float, float]  # print: ink colour jitter
    screen: tuple[float, float]  # screen gamma factor, pixel-pitch factor

    def params(self) -> dict[str, Any]:
        """JSON-able record of the presentation."""
        d = asdict(self)
        d["instrument"] = self.inst.name
        del d["inst"]
        return {k: _rounded(v) for k, v in d.items()}


def _rounded(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_rounded(x) for x in v]
    return round(float(v), 5) if isinstance(v, (float, np.floating)) else v


def sample_attack(rng: np.random.Generator, inst: Instrument, dom: Domain, effects: bool = True) -> AttackVideo:
    """Draw the presentation of ``inst`` for one video of domain ``dom``."""
    scale = float(rng.uniform(*inst.scale))
    hand = bool(rng.random() < dom.hand_held)
    if inst.kind == "replay":
        edge = float(rng.uniform(0.03, 0.08)) if rng.random() < inst.bezel else 0.0
        edge_shade = float(rng.uniform(0.5, 2.0))
    else:
        edge, edge_shade = float(rng.uniform(0.02, 0.06)), 1.0
    glare = None
    if rng.random() < inst.glare:
        glare = (*(float(v) for v in rng.uniform(0.1, 0.9, 2)), float(rng.uniform(0.08, 0.25)), float(rng.uniform(0.15, 0.4)))
    ang, fm = rng.uniform(0, math.pi), rng.uniform(*inst.moire_freq)
    finger = None
    if hand and rng.random() < 0.4:
        side, pos = rng.integers(4), float(rng.uniform(0.2, 0.8))
        x, y = [(pos, 0.98), (pos, 0.02), (0.02, pos), (0.98, pos)][side]
        finger = (x, y, float(rng.uniform(0.06, 0.12)))
    av = AttackVideo(
        inst=inst,
        effects=effects,
        scale=scale,
        hand=hand,
        rot=float(rng.normal(0, 0.03)),
        shift=tuple(float(v) for v in rng.normal(0, 0.01, 2)),
        tilt=tuple(float(v) for v in rng.normal(0, 0.0006 * 256, 2)),
        edge=edge,
        edge_shade=edge_shade,
        glare=glare,
        finger=finger,
        moire=(float(fm * math.cos(ang)), float(fm * math.sin(ang)), float(rng.uniform(0, 2 * math.pi))),
        gradient=tuple(float(v) for v in rng.uniform(-0.15, 0.15, 2)),
        bend_phase=float(rng.uniform(0, 2 * math.pi)),
        halftone=(float(rng.uniform(0.95, 1.05)), *(float(v) for v in rng.uniform(-3, 3, 3))),
        ink=tuple(float(v) for v in 1.0 + rng.uniform(-0.04, 0.04, 3)),
        screen=(float(rng.uniform(0.95, 1.05)), float(rng.uniform(0.9, 1.1))),
    )
    if not effects:  # an ideal copy: no instrument cue, the outline outside the crop
        av.scale, av.edge, av.glare, av.finger = max(scale, FULL_COVER_SCALE), 0.0, None, None
    return av


def medium_size(av: AttackVideo, R: int) -> int:
    """Side of the medium's canvas in pixels: the medium is drawn at the pixel density of the R x R
    crop (``av.scale`` x R), so showing it in the crop needs no magnification (no resampling blur)."""
    return max(8, int(round(R * av.scale)))


def source_pose(pose: Pose, av: AttackVideo, R: int) -> Pose:
    """The source's head pose on the medium's canvas: the face detector crops the face, so it keeps
    the size and place in the crop that ``pose`` gives it (the canvas is centred on the crop)."""
    off = (medium_size(av, R) - R) / 2
    return Pose(**{**pose.__dict__, "cx": pose.cx + off, "cy": pose.cy + off})


def _halftone(img: np.ndarray, av: AttackVideo) -> np.ndarray:
    """Amplitude-modulated halftone screens, one angle per ink (C, M, Y); strongest in mid-tones."""
    R = img.shape[0]
    xx, yy = Grid.get(R)
    f = 2 * math.pi * av.inst.halftone_freq * av.halftone[0] / av.scale  # cycles per canvas pixel
    out = np.empty_like(img)
    for c, angle in enumerate((15.0, 75.0, 0.0)):
        t = math.radians(angle + av.halftone[1 + c])
        a = np.cos(f * (xx * math.cos(t) + yy * math.sin(t)))
        b = np.cos(f * (-xx * math.sin(t) + yy * math.cos(t)))
        x = img[..., c]
        out[..., c] = x + av.inst.halftone_amp * (a * b) * 4.0 * x * (1.0 - x)
    return out


def print_medium(src: np.ndarray, av: AttackVideo, rng: np.random.Generator) -> np.ndarray:
    """What a printed photo reflects: reduced saturation and gamut, halftone, paper texture."""
    if not av.effects:
        return src
    inst = av.inst
    x = np.clip(src, 0, 1)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + inst.saturation * (x - gray)
    x = _halftone(x, av)
    lo, hi = inst.gamut
    x = lo + (hi - lo) * np.clip(x, 0, 1)
    ink = np.asarray(inst.tint, np.float32) * np.asarray(av.ink, np.float32)
    grain = cv2.GaussianBlur(rng.standard_normal(x.shape[:2]).astype(np.float32), (0, 0), 0.7 * av.scale) * av.scale
    paper = 1.0 + inst.paper_noise * grain
    return (x * ink * paper[..., None]).astype(np.float32)


def screen_medium(src: np.ndarray, av: AttackVideo) -> np.ndarray:
    """What a screen emits: gamma, black level, tint and the sub-pixel grid."""
    if not av.effects:
        return src
    inst = av.inst
    R = src.shape[0]
    xx, yy = Grid.get(R)
    x = np.clip(src, 0, 1) ** (inst.screen_gamma * av.screen[0])
    if inst.saturation != 1.0:  # the display's colour rendering
        gray = x.mean(axis=2, keepdims=True)
        x = np.clip(gray + inst.saturation * (x - gray), 0, 1)
    x = inst.black + (1.0 - inst.black) * x
    x = x * np.asarray(inst.tint, np.float32)
    pitch = inst.pixel_pitch * av.screen[1] * av.scale  # canvas pixels per screen pixel
    rows = 1.0 - inst.grid_amp * 0.5 * (1.0 - np.cos(2 * math.pi * yy / pitch))
    for c in range(3):  # vertical R, G, B stripes
        cols = 1.0 - inst.grid_amp * (1.0 - np.cos(2 * math.pi * (xx / pitch - c / 3.0))) * 0.5
        x[..., c] *= cols * rows
    return x.astype(np.float32)


def _homography(R: int, rot: float, shift: Any, tilt: Any, canvas: int | None = None) -> np.ndarray:
    """Canvas coordinates -> frame coordinates: centre the canvas on the R x R frame, tilt, rotate, shift."""
    canvas = canvas or R
    m, c = canvas / 2, R / 2
    t = np.asarray(shift) * R
    cs, sn = math.cos(rot), math.sin(rot)
    A = np.array([[cs, -sn, c + t[0]], [sn, cs, c + t[1]], [0, 0, 1]], np.float64)  # about the frame centre
    P = np.eye(3)
    P[2, :2] = np.asarray(tilt) / canvas  # perspective tilt of the medium
    C = np.eye(3)
    C[:2, 2] = -m
    return A @ P @ C


def recapture(
    medium: np.ndarray,
    av: AttackVideo,
    room: np.ndarray,
    light: Light,
    rng: np.random.Generator,
    live_eyes: tuple[np.ndarray, np.ndarray] | None = None,
    skin: np.ndarray | None = None,
    face: tuple[float, float] | None = None,
) -> np.ndarray:
    """Place a print / screen (canvas ``medium``, see :func:`medium_size`) in the room (background
    ``room`` (R, R, 3), ``light``) in front of the camera: one frame (R, R, 3).

    ``face``: the face centre on the canvas. The face detector that makes the crop follows it, so
    the medium's shift and hand jitter move the medium's outline, not the face: the face lands
    where it would with the medium centred (as a live face's pose puts it).
    """
    R, M = room.shape[0], medium.shape[0]
    xx, yy = Grid.get(R)
    mx, my = Grid.get(M)
    inst = av.inst
    med = medium.copy()
    if av.edge > 0:  # paper margin or screen bezel, inside the medium's outline
        border = np.minimum(np.minimum(mx, M - mx), np.minimum(my, M - my)) < av.edge * M
        dark = np.array([0.04, 0.04, 0.05], np.float32) * av.edge_shade  # a bezel
        med[border] = dark if inst.kind == "replay" else np.array([0.9, 0.9, 0.88], np.float32)  # or white paper
    if av.effects and inst.kind in ("print", "cut") and inst.bend > 0:  # bent paper: wavy rows, shading bands
        shift = inst.bend * M * 0.05 * np.sin(2 * math.pi * mx / M + av.bend_phase)
        med = cv2.remap(med, mx, (my + shift).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        med = med * (1.0 + inst.bend * np.cos(2 * math.pi * mx / M + av.bend_phase))[..., None]
    if live_eyes is not None and av.effects:  # cut photo: the live eyes show through the holes, holes have dark rims
        eyes, hole = live_eyes
        rim = cv2.GaussianBlur(hole, (0, 0), 1.2) - hole
        med = blend(med, eyes, hole) * (1.0 - 1.5 * np.clip(rim, 0, 1))[..., None]
    Hm = _homography(R, av.rot, av.shift, av.tilt, canvas=M)
    if av.hand:  # hand-held: the medium moves a little between frames
        Hm = _homography(R, rng.normal(0, 0.036), rng.normal(0, 0.022, 2), rng.normal(0, 0.0006 * 256, 2)) @ Hm
    if face is not None:  # re-centre on the face (what the face detector's crop does)
        at = Hm @ np.array([face[0], face[1], 1.0])
        T = np.eye(3)
        T[:2, 2] = [face[0] - (M - R) / 2 - at[0] / at[2], face[1] - (M - R) / 2 - at[1] / at[2]]
        Hm = T @ Hm
    warped = cv2.warpPerspective(med, Hm, (R, R), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpPerspective(np.ones((M, M), np.float32), Hm, (R, R), flags=cv2.INTER_LINEAR)
    if not av.effects:
        return blend(room, warped, mask)
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
        px, py, sig = (v * R for v in av.glare[:3])
        amp = av.glare[3]
        spot = amp * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sig * sig))
        img = img + spot[..., None].astype(np.float32) * light.color
    out = blend(room, img, mask)
    if av.finger is not None and skin is not None:
        x, y, r = (v * R for v in av.finger)
        d = np.sqrt(((xx - x) / r) ** 2 + ((yy - y) / (1.6 * r)) ** 2)
        shade = light.ambient + light.diffuse * 0.7
        out = blend(out, skin * shade * light.color, smoothstep((1.0 - d) * 4))
    return out


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
