"""Synthetic multi-domain face anti-spoofing benchmark (``anrl-ray convert synthetic``).

Four domains named after the real datasets, O (OULU-NPU), C (CASIA-FASD), I (Replay-Attack),
M (MSU-MFSD), that differ the way those do (:mod:`.domains`). Everything is rendered with
numpy + OpenCV, deterministically for a seed (same seed -> same shard bytes):

* Live faces (:mod:`.render`): a shaded height field posed by yaw / pitch / roll under a per-video
  light, with eyes, brows, lips, hair, glasses; the height field *is* the stored depth map (8-bit
  PNG, 255 = nearest), so the depth target is exact. Frames differ by head motion and blinks.
* Scenes (:mod:`.scene`): lighting, background, light, pose and defocus, drawn per domain. A live
  video films one; an attack's source (what the print or screen shows) and the room it is
  presented in are drawn from the *same* distribution, so scene content never tells spoof from
  live within a domain.
* Attacks (:mod:`.attacks`): ``print``, ``replay`` and ``cut`` media with their instrument effects
  (halftone, gamut, paper, pixel grid, moire, glare, bezel, paper edge, bending, eye holes),
  placed in the room and filmed by the same domain camera (:mod:`.camera`) as live faces.
  Spoof rows store no depth. ``instrument_effects=False`` turns the effects off (a diagnostic).

Videos are planned, then rendered (:mod:`.video`); every domain folder gets ``videos.json``, the
generator parameters of each video (:func:`video_params`). Subjects are split train / dev / test
disjointly per domain (50 / 20 / 30 %). The defaults are sized for a 2-core machine (64 px crops,
~2,000 rows, seconds to generate); the knobs make it bigger. ``benchmarks/synthetic_dg_gap.py``
checks that it is a domain-generalization problem (in-domain easy, cross-domain clearly harder).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import cv2

from anrl_ray.data.format import MANIFEST, DatasetWriter
from anrl_ray.data.synthetic.domains import DOMAIN_PROFILES, DOMAINS, Camera, Domain, Instrument, Lighting
from anrl_ray.data.synthetic.video import RENDER_SCALE, SPLIT_FRACTIONS, domain_rows, split_subjects, video_params
from anrl_ray.errors import UserError

__all__ = [
    "DEFAULTS",
    "DOMAINS",
    "DOMAIN_PROFILES",
    "GENERATOR_VERSION",
    "RENDER_SCALE",
    "SPLIT_FRACTIONS",
    "Camera",
    "Domain",
    "Instrument",
    "Lighting",
    "default_cache_dir",
    "domain_rows",
    "ensure_default_benchmark",
    "generate",
    "split_subjects",
    "video_params",
]

# 2: the attacker's source scene is drawn like the domain's live scenes (was: O's office scene for
#    every domain, a spoof cue shared by all domains); live faces get the same defocus as sources.
# 3: O's prints and displays make faces more vivid (over-saturated, deep blacks) instead of sharing the
#    other domains' texture cues, so O as a target has a DG gap (the change was first made without a
#    version bump: caches named v2 made after it hold different O data; v3 names them apart).
GENERATOR_VERSION = 3
VIDEOS_FILE = "videos.json"  # per-video generator parameters, written into every domain folder
DEFAULTS: dict[str, Any] = {"subjects": 20, "videos_per_subject": 2, "frames_per_video": 4, "img_size": 64}

cv2.setNumThreads(1)


def _check_args(domains: Sequence[str], subjects: int, videos_per_subject: int, frames_per_video: int, img_size: int) -> None:
    unknown = [d for d in domains if d not in DOMAIN_PROFILES]
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
    instrument_effects: bool = True,
) -> dict[str, Any]:
    """Write the synthetic benchmark: one dataset folder per domain (``out_dir/O``, ...).

    Per subject: ``videos_per_subject`` live videos and ``videos_per_subject`` videos of each of
    the domain's attack types (O, I, M: print + replay; C: print + cut + replay), each of
    ``frames_per_video`` frames of ``img_size`` px. Each domain folder also gets ``videos.json``:
    the generator parameters of every video (:func:`video_params`). Returns a summary (rows,
    seconds, frames/s).

    Args:
        profiles: domain profiles replacing ``DOMAIN_PROFILES`` entries (experiments; their names
            are recorded in the manifest's ``converter_args``).
        instrument_effects: False renders every attack as an ideal copy of its source (no halftone,
            moire, gamut, glare, bezel, paper edge...; recorded in ``converter_args``): a diagnostic
            that only the instruments tell spoof from live.
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
    if not instrument_effects:
        args["instrument_effects"] = False
    summary: dict[str, Any] = {"out": str(out.resolve()), **args, "domains": {}}
    t_all = time.perf_counter()
    total = 0
    for d in domains:
        t0 = time.perf_counter()
        n = 0
        with DatasetWriter(out / d, domain=d, converter="synthetic", converter_args={**args, "like": DOMAIN_PROFILES[d].like},
                           overwrite=overwrite) as w:
            for row in domain_rows(d, seed=seed, subjects=subjects, videos_per_subject=videos_per_subject,
                                   frames_per_video=frames_per_video, img_size=img_size, profile=profiles.get(d),
                                   instrument_effects=instrument_effects):
                w.add(**row)
                n += 1
        videos = video_params(d, seed=seed, subjects=subjects, videos_per_subject=videos_per_subject, img_size=img_size,
                              profile=profiles.get(d), instrument_effects=instrument_effects)
        (out / d / VIDEOS_FILE).write_text("[\n" + ",\n".join(json.dumps(v) for v in videos) + "\n]\n")  # a video a line
        total += n
        summary["domains"][d] = {"rows": n, "seconds": round(time.perf_counter() - t0, 2), "like": DOMAIN_PROFILES[d].like}
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
