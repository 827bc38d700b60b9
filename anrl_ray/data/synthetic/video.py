"""One synthetic domain, video by video: subjects, splits, then each video planned and rendered.

Every video is first *planned* (:func:`plan_video`: camera settings, scenes, attack presentation,
all drawn from one random stream) and then *rendered* from the plan with a second stream (textures,
background clutter, per-frame motion, blinks, sensor noise). So :func:`video_params` returns the
exact per-video generator parameters of a benchmark without rendering anything.

A live video films one scene. An attack video shows the attacker's *source* (the same subject
filmed earlier, a scene drawn like a live one, defocus included) on a print or a screen, presented
in a *room* (also drawn like a live scene) and filmed by the same domain camera. Spoof rows store
no depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from anrl_ray.data.synthetic.attacks import (
    AttackVideo,
    eye_holes,
    medium_size,
    print_medium,
    recapture,
    sample_attack,
    screen_medium,
    source_pose,
)
from anrl_ray.data.synthetic.camera import CameraVideo, capture, depth_png, sample_camera
from anrl_ray.data.synthetic.domains import DOMAIN_PROFILES, DOMAINS, Domain
from anrl_ray.data.synthetic.render import PersonLayer, Subject, head_motion, sample_subject, smooth_field
from anrl_ray.data.synthetic.scene import Scene, defocus, film, render_background, sample_scene

SPLIT_FRACTIONS = {"train": 0.5, "dev": 0.2}  # the rest is test
RENDER_SCALE = 2  # faces are rendered at 2x the stored size, then captured (anti-aliasing, recapture patterns)
_DOMAIN_CODE = {d: i for i, d in enumerate(DOMAINS)}
_KIND_CODE = {"live": 0, "print": 1, "replay": 2, "cut": 3}


def split_subjects(n: int, rng: np.random.Generator) -> dict[int, str]:
    """Disjoint train / dev / test subject sets (50 / 20 / 30 %, each at least one subject)."""
    n_train = max(1, round(n * SPLIT_FRACTIONS["train"]))
    n_dev = max(1, round(n * SPLIT_FRACTIONS["dev"]))
    n_train = min(n_train, n - n_dev - 1)
    order = rng.permutation(n)
    return {int(s): ("train" if i < n_train else "dev" if i < n_train + n_dev else "test") for i, s in enumerate(order)}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


@dataclass
class VideoPlan:
    """Everything drawn for one video before rendering."""

    kind: str  # live | print | replay | cut
    camera: CameraVideo
    scene: Scene  # live: the filmed scene; attack: the room the medium is presented in
    source: Scene | None = None  # attack: the attacker's source image / video
    attack: AttackVideo | None = None

    def params(self, R: int) -> dict[str, Any]:
        """JSON-able record: camera, scene, source, attack (None where not applicable)."""
        return {
            "instrument": self.attack.inst.name if self.attack else "live",
            "camera": self.camera.params(),
            "scene": self.scene.params(R),
            "source": self.source.params(R) if self.source else None,
            "attack": self.attack.params() if self.attack else None,
        }


def plan_video(
    rng: np.random.Generator, dom: Domain, kind: str, cycle: int, R: int, instrument_effects: bool = True
) -> VideoPlan:
    """Draw one video of ``dom``: live, or an attack with the ``cycle``-th instrument of ``kind``."""
    cam = sample_camera(rng, dom.cameras[rng.integers(len(dom.cameras))])
    scene = sample_scene(rng, dom, R)
    if kind == "live":
        return VideoPlan(kind, cam, scene)
    instruments = dom.attacks[kind]
    attack = sample_attack(rng, instruments[cycle % len(instruments)], dom, effects=instrument_effects)
    return VideoPlan(kind, cam, scene, source=sample_scene(rng, dom, R), attack=attack)


def render_video(
    plan: VideoPlan, subj: Subject, rng: np.random.Generator, n_frames: int, size: int
) -> list[tuple[bytes, bytes | None]]:
    """Frames of a planned video: (JPEG bytes, depth PNG bytes or None for a spoof)."""
    R = size * RENDER_SCALE
    cam, scene = plan.camera, plan.scene
    bg = render_background(rng, R, scene)
    out: list[tuple[bytes, bytes | None]] = []
    if plan.attack is None or plan.source is None:
        person = PersonLayer(R, subj, scene.pose, scene.light, smooth_field(rng, R, 6))
        for _ in range(n_frames):
            motion = head_motion(rng, person.pose, R)
            rgb, depth = film(person, bg, scene, motion, bool(rng.random() < 0.2), RENDER_SCALE)
            out.append((capture(rgb, cam, size, rng), depth_png(depth, size)))
        return out
    av, src = plan.attack, plan.source
    # The source is drawn on the medium's canvas at the crop's pixel density, the face where the
    # face detector will put it in the crop: the scene content reaches the crop as a live scene does.
    M = medium_size(av, R)
    pose = source_pose(src.pose, av, R)
    src_bg = render_background(rng, R, src, size=M)
    source = PersonLayer(M, subj, pose, src.light, smooth_field(rng, M, max(2, round(6 * M / R))))
    still = behind = holes = None
    if plan.kind in ("print", "cut"):
        photo, _ = source.frame(src_bg, None, blink=bool(rng.random() < 0.2))  # a photo may catch a blink, like a frame
        still = print_medium(defocus(photo, src.blur, RENDER_SCALE), av, rng)
    if plan.kind == "cut" and av.effects:  # the attacker's own face right behind the photo, eyes at the holes
        behind = PersonLayer(M, subj, pose, scene.light, smooth_field(rng, M, 6))
        holes = eye_holes(M, subj, pose)
    for _ in range(n_frames):
        if still is not None:
            medium = still
        else:  # a replayed video moves and blinks
            photo, _ = source.frame(src_bg, head_motion(rng, pose, R), blink=bool(rng.random() < 0.2))
            medium = screen_medium(defocus(photo, src.blur, RENDER_SCALE), av)
        eyes = None
        if behind is not None and holes is not None:
            eyes = (behind.frame(src_bg, None, blink=bool(rng.random() < 0.3))[0], holes)
        frame = recapture(medium, av, bg, scene.light, rng, live_eyes=eyes, skin=subj.skin, face=(pose.cx, pose.cy))
        out.append((capture(frame, cam, size, rng), None))
    return out


def _videos(
    domain: str, dom: Domain, seed: int, subjects: int, videos_per_subject: int, R: int, instrument_effects: bool
) -> Iterator[tuple[int, str, str, int, VideoPlan]]:
    """(subject index, split, kind, video index, plan) of every video of a domain, in a fixed order."""
    dcode = _DOMAIN_CODE[domain]
    splits = split_subjects(subjects, _rng(seed, dcode, 999_999))
    for si in range(subjects):
        for kind in ["live", *dom.attacks]:
            for vi in range(videos_per_subject):
                plan = plan_video(_rng(seed, dcode, si, _KIND_CODE[kind], vi), dom, kind, vi + si, R, instrument_effects)
                yield si, splits[si], kind, vi, plan


def video_params(
    domain: str,
    *,
    seed: int,
    subjects: int,
    videos_per_subject: int,
    img_size: int,
    profile: Domain | None = None,
    instrument_effects: bool = True,
) -> list[dict[str, Any]]:
    """The generator parameters of every video of one domain (what ``generate`` writes to ``videos.json``).

    One dict per video: ``video_id``, ``subject_id``, ``split``, ``attack_type``, ``instrument``,
    ``camera`` (the domain camera's settings), ``scene`` (live: the filmed scene; attack: the room),
    ``source`` (attack: the scene on the print / screen; None for live) and ``attack`` (the
    presentation; None for live). Scenes hold ``lighting``, ``background``, ``bg_color``,
    ``bg_level``, ``ambient``, ``diffuse``, ``light_dir``, ``light_temp``, ``pose`` (centre and
    size as fractions of the crop, angles in radians) and ``blur`` (stored pixels). Nothing is rendered.
    """
    dom = profile or DOMAIN_PROFILES[domain]
    R = img_size * RENDER_SCALE
    out = []
    for si, split, kind, vi, plan in _videos(domain, dom, seed, subjects, videos_per_subject, R, instrument_effects):
        sid = f"{domain}{si:03d}"
        head = {"video_id": f"{sid}_{kind}_{vi}", "subject_id": sid, "split": split, "attack_type": kind}
        out.append({**head, **plan.params(R)})
    return out


def domain_rows(
    domain: str,
    *,
    seed: int,
    subjects: int,
    videos_per_subject: int,
    frames_per_video: int,
    img_size: int,
    profile: Domain | None = None,
    instrument_effects: bool = True,
) -> Iterator[dict[str, Any]]:
    """Every row (``DatasetWriter.add`` keyword arguments) of one synthetic domain, in a fixed order.

    ``profile`` replaces the built-in ``DOMAIN_PROFILES[domain]`` (experiments with the generator);
    ``instrument_effects=False`` renders attacks as ideal copies of their source (a diagnostic).
    """
    dom = profile or DOMAIN_PROFILES[domain]
    R = img_size * RENDER_SCALE
    dcode = _DOMAIN_CODE[domain]
    subject = None
    for si, split, kind, vi, plan in _videos(domain, dom, seed, subjects, videos_per_subject, R, instrument_effects):
        if subject is None or subject[0] != si:
            subject = (si, sample_subject(_rng(seed, dcode, si), dom))
        sid = f"{domain}{si:03d}"
        render_rng = _rng(seed, dcode, si, _KIND_CODE[kind], vi, 1)
        name = plan.attack.inst.name if plan.attack else "live"
        for fi, (image, depth) in enumerate(render_video(plan, subject[1], render_rng, frames_per_video, img_size)):
            yield {
                "image": image,
                "image_format": "jpeg",
                "depth": depth,
                "label": 0 if kind == "live" else 1,
                "attack_type": kind,
                "subject_id": sid,
                "video_id": f"{sid}_{kind}_{vi}",
                "frame_index": fi,
                "split": split,
                "source_path": f"synthetic://{domain}/{sid}/{kind}/{name}/{vi}/{fi}",
            }
