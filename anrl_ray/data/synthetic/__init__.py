"""Synthetic multi-domain face anti-spoofing benchmark (``anrl-ray convert synthetic``).

Four domains named after the real datasets, O (OULU-NPU), C (CASIA-FASD), I (Replay-Attack),
M (MSU-MFSD), that differ the way those do (:mod:`.domains`). Everything is rendered with
numpy + OpenCV, deterministically for a seed (same seed -> same shard bytes):

* Live faces (:mod:`.render`): a height field (ellipsoidal head + nose, eye sockets, brow ridge,
  cheeks, lips, chin) posed by yaw / pitch / roll and shaded with Lambert + Blinn-Phong under a
  per-video light; albedo with eyes (iris, pupil, blinks), brows, lips, nostrils, hair, glasses.
  The height field used for shading *is* the stored depth map (8-bit PNG, 255 = nearest), so the
  depth target is exact. Frames of a video differ by small head motion and blinks.
* Attacks (:mod:`.attacks`) are re-captures of a rendered live face of the same subject: ``print``,
  ``replay`` and ``cut``, placed in the scene by a homography, then filmed by the same domain
  camera (:mod:`.camera`) as live faces. Spoof rows store no depth.

Subjects are split train / dev / test disjointly per domain (50 / 20 / 30 %). The defaults
are sized for a 2-core machine (64 px crops, ~2,000 rows, seconds to generate); the knobs
make it bigger. ``benchmarks/synthetic_dg_gap.py`` checks that it is a domain-generalization
problem (in-domain easy, cross-domain clearly harder but far from chance).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import cv2

from anrl_ray.data.format import MANIFEST, DatasetWriter
from anrl_ray.data.synthetic.domains import DOMAIN_PROFILES, DOMAINS, Camera, Domain, Instrument, Lighting
from anrl_ray.data.synthetic.video import RENDER_SCALE, SPLIT_FRACTIONS, domain_rows, split_subjects
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
]

GENERATOR_VERSION = 1
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
        with DatasetWriter(out / d, domain=d, converter="synthetic", converter_args={**args, "like": DOMAIN_PROFILES[d].like},
                           overwrite=overwrite) as w:
            for row in domain_rows(d, seed=seed, subjects=subjects, videos_per_subject=videos_per_subject,
                                   frames_per_video=frames_per_video, img_size=img_size, profile=profiles.get(d)):
                w.add(**row)
                n += 1
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
