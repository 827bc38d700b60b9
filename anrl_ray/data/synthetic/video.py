"""One synthetic domain, video by video: subjects, splits, live videos and attack videos.

Attacks are re-captures of a rendered live face of the same subject; the medium goes through the
same domain camera as live faces. Spoof rows store no depth.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from anrl_ray.data.synthetic.attacks import eye_holes, print_medium, recapture, sample_attack, screen_medium, source_camera
from anrl_ray.data.synthetic.camera import capture, depth_png, sample_camera
from anrl_ray.data.synthetic.domains import DOMAIN_PROFILES, DOMAINS, Domain
from anrl_ray.data.synthetic.render import (
    PersonLayer,
    Subject,
    head_motion,
    render_background,
    sample_light,
    sample_pose,
    sample_subject,
    smooth_field,
)

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

    ``profile`` replaces the built-in ``DOMAIN_PROFILES[domain]`` (experiments with the generator).
    """
    dom = profile or DOMAIN_PROFILES[domain]
    dcode = _DOMAIN_CODE[domain]
    splits = split_subjects(subjects, _rng(seed, dcode, 999_999))
    kinds = ["live", *dom.attacks]
    for si in range(subjects):
        subj = sample_subject(_rng(seed, dcode, si), dom)
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
    cam = sample_camera(rng, dom.cameras[rng.integers(len(dom.cameras))])
    light = sample_light(rng, dom, lighting)
    scene = render_background(rng, R, lighting)
    skin_tex = smooth_field(rng, R, 6)
    out: list[tuple[bytes, bytes | None, str]] = []
    if kind == "live":
        person = PersonLayer(R, subj, sample_pose(rng, R), light, skin_tex)
        for _ in range(n_frames):
            rgb, depth = person.frame(scene, head_motion(rng, person.pose, R), blink=bool(rng.random() < 0.2))
            out.append((capture(rgb, cam, size, rng), depth_png(depth, size), "live"))
        return out
    inst = dom.attacks[kind][cycle % len(dom.attacks[kind])]
    av = sample_attack(rng, inst, dom, R)
    # The attacker's source: the same subject filmed earlier (its own light and background) with a good camera.
    src_lighting = DOMAIN_PROFILES["O"].lightings[0]
    src_light = sample_light(rng, dom, src_lighting)
    src_bg = render_background(rng, R, src_lighting)
    src_pose = sample_pose(rng, R)
    src_pose.a /= av.scale  # the face detector crops the face: keep its size in the crop
    src_pose.cx = R / 2 + (src_pose.cx - R / 2) / av.scale
    src_pose.cy = R / 2 + (src_pose.cy - R / 2) / av.scale
    source = PersonLayer(R, subj, src_pose, src_light, smooth_field(rng, R, 6))
    src_blur = rng.uniform(0.5, 1.0)  # the source camera's optics: attacks are imaged twice
    still = None
    if kind in ("print", "cut"):
        still = print_medium(source_camera(source.frame(src_bg, None, blink=False)[0], src_blur), inst, rng)
    behind = holes = None
    if kind == "cut":  # the attacker's own face right behind the photo, eyes aligned with the holes
        behind = PersonLayer(R, subj, src_pose, light, skin_tex)
        holes = eye_holes(R, subj, src_pose)
    for _ in range(n_frames):
        if still is not None:
            medium = still
        else:  # a replayed video moves
            photo, _ = source.frame(src_bg, head_motion(rng, src_pose, R), blink=bool(rng.random() < 0.2))
            medium = screen_medium(source_camera(photo, src_blur), inst, rng)
        eyes = None
        if behind is not None:
            eyes = (behind.frame(scene, None, blink=bool(rng.random() < 0.3))[0], holes)
        frame = recapture(medium, av, scene, light, rng, live_eyes=eyes, skin=subj.skin)
        out.append((capture(frame, cam, size, rng), None, inst.name))
    return out

