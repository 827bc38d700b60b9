"""Scenes: what stands in front of a camera (room, background, light, head pose, defocus).

A live video films one scene. An attack video has two, drawn by the *same* :func:`sample_scene`
of the same domain: the attacker's ``source`` (the subject filmed or photographed earlier, which
is what the print or screen shows) and the ``room`` in which the medium is presented (its light
falls on a print; its background shows where the medium does not cover the crop). So scene
content (lighting, background, pose, blur) never tells spoof from live; the instrument and its
re-capture do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from anrl_ray.data.synthetic.domains import Domain, Lighting
from anrl_ray.data.synthetic.render import Light, PersonLayer, Pose, smooth_field

BACKGROUND_RECTS = {"plain": 0, "office": 3, "cluttered": 9}  # furniture / clutter rectangles per background kind


@dataclass
class Scene:
    """One sampled scene; ``params()`` is its JSON record."""

    lighting: str  # name of the domain's Lighting
    background: str  # plain | office | cluttered
    bg_color: np.ndarray  # wall colour (3,), before ``bg_level``
    bg_level: float  # background brightness
    light: Light
    light_temp: float  # -1 warm .. +1 cool (gives ``light.color``)
    pose: Pose  # render pixels
    blur: float  # defocus sigma, stored pixels (a live face; for a source: the attacker's camera)

    def params(self, R: int) -> dict[str, Any]:
        """JSON-able record; positions and sizes as fractions of the crop."""
        p = self.pose
        return {
            "lighting": self.lighting,
            "background": self.background,
            "bg_color": [round(float(c), 4) for c in self.bg_color],
            "bg_level": round(self.bg_level, 4),
            "ambient": round(self.light.ambient, 4),
            "diffuse": round(self.light.diffuse, 4),
            "light_dir": [round(float(c), 4) for c in self.light.direction],
            "light_temp": round(self.light_temp, 4),
            "pose": {"cx": round(p.cx / R, 4), "cy": round(p.cy / R, 4), "size": round(p.a / R, 4),
                     "roll": round(p.roll, 4), "yaw": round(p.yaw, 4), "pitch": round(p.pitch, 4)},
            "blur": round(self.blur, 4),
        }


def sample_light(rng: np.random.Generator, dom: Domain, lighting: Lighting) -> tuple[Light, float]:
    """A per-video light under ``lighting``: (light, colour temperature)."""
    d = np.array([rng.uniform(-lighting.side, lighting.side), rng.uniform(-0.5, 0.1), 1.0], np.float32)
    temp = float(rng.uniform(*dom.light_temp))
    color = np.array([1.0 - 0.12 * temp, 1.0, 1.0 + 0.12 * temp], np.float32)
    light = Light(float(rng.uniform(*lighting.ambient)), float(rng.uniform(*lighting.diffuse)), d / np.linalg.norm(d), color)
    return light, temp


def sample_pose(rng: np.random.Generator, R: int) -> Pose:
    """A per-video head pose, roughly centred in an R x R render (what a face detector crop gives)."""
    return Pose(
        cx=R * (0.5 + rng.uniform(-0.04, 0.04)),
        cy=R * (0.53 + rng.uniform(-0.04, 0.03)),
        a=R * rng.uniform(0.29, 0.35),
        roll=rng.uniform(-0.12, 0.12),
        yaw=rng.uniform(-0.3, 0.3),
        pitch=rng.uniform(-0.15, 0.15),
        gaze=rng.uniform(-0.03, 0.03),
    )


def sample_scene(rng: np.random.Generator, dom: Domain, R: int) -> Scene:
    """Draw a scene of domain ``dom``: one of its lightings, a background, a light, a pose, a defocus."""
    lighting = dom.lightings[rng.integers(len(dom.lightings))]
    light, temp = sample_light(rng, dom, lighting)
    return Scene(
        lighting=lighting.name,
        background=lighting.background,
        bg_color=rng.uniform(0.3, 0.9, 3).astype(np.float32),
        bg_level=float(rng.uniform(*lighting.bg_level)),
        light=light,
        light_temp=temp,
        pose=sample_pose(rng, R),
        blur=float(rng.uniform(*dom.scene_blur)),
    )


def render_background(rng: np.random.Generator, R: int, scene: Scene, size: int | None = None) -> np.ndarray:
    """The static background (size, size, 3): smooth wall colour, plus furniture / clutter rectangles.

    ``size`` (default ``R``) > R renders a larger canvas at the same pixel density as an R x R crop
    (an attack's source, shown on a medium larger than the crop): same rectangle sizes and density.
    """
    size = size or R
    k = size / R

    def field(cells: int, channels: int) -> np.ndarray:
        return smooth_field(rng, size, max(2, round(cells * k)), channels)

    bg = scene.bg_color[None, None, :] * (1.0 + 0.15 * field(3, 3))
    for _ in range(round(BACKGROUND_RECTS[scene.background] * k * k)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(R // 10, R // 2, 2)
        color = rng.uniform(0.05, 1.0, 3).astype(np.float32)
        bg[y0 : y0 + h, x0 : x0 + w] = color
    if scene.background == "cluttered":
        bg = bg * (1.0 + 0.1 * field(12, 1))
    return np.clip(bg * scene.bg_level, 0, 1).astype(np.float32)


def defocus(img: np.ndarray, blur: float, render_scale: int) -> np.ndarray:
    """Gaussian defocus of ``blur`` stored pixels on a render at ``render_scale`` x the stored size."""
    return cv2.GaussianBlur(img, (0, 0), blur * render_scale)


def film(
    person: PersonLayer, bg: np.ndarray, scene: Scene, M: np.ndarray | None, blink: bool, render_scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """One frame of ``person`` in ``scene`` as the lens sees it: (rgb with defocus, depth)."""
    rgb, depth = person.frame(bg, M, blink=blink)
    return defocus(rgb, scene.blur, render_scale), depth
