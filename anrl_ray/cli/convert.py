"""``anrl-ray convert DATASET``: parsers and thin handlers of the dataset converters.

The work is done by library functions: :func:`anrl_ray.data.synthetic.generate`,
:func:`anrl_ray.data.converters.convert_videos` and :func:`anrl_ray.data.tface.import_lists`.
Every handler checks the output folder first (:mod:`anrl_ray.data.output`): a plain dataset
name, ``--overwrite`` only over a dataset folder, stale partial folders removed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from anrl_ray.data import faces, synthetic
from anrl_ray.data.converters import FrameSettings, convert_videos
from anrl_ray.data.format import ATTACK_TYPES, SPLITS
from anrl_ray.data.layouts import LAYOUTS
from anrl_ray.data.output import check_dataset_name, check_replaceable, remove_stale_partials, sigterm_raises
from anrl_ray.data.tface import CROPS, MISSING_DEPTH, REFERENCE_DEPTH_RULES, ImportSettings, import_lists, resolve_layout
from anrl_ray.errors import UserError


def register(conv_sub) -> None:
    """Add one sub-command per converter to ``anrl-ray convert`` (its subparsers object)."""
    _register_synthetic(conv_sub)
    for layout in LAYOUTS.values():
        _register_videos(conv_sub, layout.name)
    _register_tface(conv_sub)


# ----------------------------------------------------------------------------------------
# Argument types


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _margin(text: str) -> float:
    value = float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"expected a margin >= 0, got {text}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality in 1..100, got {text}")
    return value


def _replace_rule(text: str) -> tuple[str, str]:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW (e.g. Oulu_NPU=Oulu_NPU_depth), got {text!r}")
    old, new = text.split("=", 1)
    return old, new


def add_image_options(p: argparse.ArgumentParser, *, frames: bool = True, margin: float = 0.25) -> None:
    """Options shared by the video converters and ``convert tface``."""
    p.add_argument("--out", required=True, type=Path,
                   help="data root: the dataset is written to OUT/<domain> (what --data points at later)")
    if frames:
        p.add_argument("--frames-per-video", type=_positive_int, default=25, metavar="N",
                       help="frames sampled evenly from each video (default 25)")
    p.add_argument("--img-size", type=_positive_int, default=256, metavar="S", help="side of the square crops (default 256)")
    p.add_argument("--margin", type=_margin, default=margin, metavar="M",
                   help=f"crop side = face side * (1 + M), M/2 on each side, as the reference's add_face_margin "
                        f"(default {margin})")
    if frames:
        p.add_argument("--depth-dir", type=Path, metavar="D",
                       help="user depth renders (e.g. PRNet) mirroring the raw layout: D/<video path without "
                            "extension>/<frame number>.png, full-frame; default: the procedural face template")
    p.add_argument("--detector", choices=faces.DETECTORS, default="auto",
                   help="face detector (auto = yuface, else the OpenCV Haar cascade)")
    p.add_argument("--jpeg-quality", type=_quality, default=95)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset (only once the new one is complete)")


# ----------------------------------------------------------------------------------------
# convert synthetic


def _register_synthetic(conv_sub) -> None:
    defaults = synthetic.DEFAULTS
    p = conv_sub.add_parser(
        "synthetic",
        help="generate the synthetic 4-domain benchmark (O, C, I, M)",
        description="Render a synthetic face anti-spoofing benchmark: one Parquet dataset per domain under --out.",
    )
    p.add_argument("--out", required=True, help="output data root; domains go to OUT/O, OUT/C, OUT/I, OUT/M")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domains", default=",".join(synthetic.DOMAINS), help="comma-separated subset of O,C,I,M")
    p.add_argument("--subjects", type=int, default=defaults["subjects"], help="subjects per domain (split 50/20/30)")
    p.add_argument("--videos-per-subject", type=int, default=defaults["videos_per_subject"],
                   help="live videos per subject, and videos per subject of each attack type")
    p.add_argument("--frames-per-video", type=int, default=defaults["frames_per_video"])
    p.add_argument("--img-size", type=int, default=defaults["img_size"], help="stored crop size in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace existing domain folders")
    p.set_defaults(func=run_synthetic)


def run_synthetic(args: argparse.Namespace) -> int:
    """``anrl-ray convert synthetic``: :func:`anrl_ray.data.synthetic.generate` into ``--out``."""
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    out = Path(args.out)
    for d in domains:
        check_dataset_name(d, "--domains")
        if args.overwrite:  # without --overwrite, generate refuses any existing folder itself
            check_replaceable(out / d, overwrite=True)
    remove_stale_partials(out)
    with sigterm_raises():
        summary = synthetic.generate(
            out,
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


# ----------------------------------------------------------------------------------------
# convert oulu / casia / replay / msu


def _register_videos(conv_sub, name: str) -> None:
    layout = LAYOUTS[name]
    p = conv_sub.add_parser(
        layout.name,
        help=f"convert {layout.title} videos",
        description=f"Convert {layout.title} ({layout.expected}) into the Parquet format.",
    )
    p.add_argument("--root", required=True, type=Path, help=f"the {layout.title} folder as released")
    add_image_options(p)
    p.add_argument("--domain", default=layout.domain, help=f"domain name, also the output folder (default {layout.domain})")
    if layout.name in ("casia", "msu"):
        p.add_argument("--dev-fraction", type=_fraction, default=0.25,
                       help="fraction of train subjects moved to dev, the last ones in numeric order (default 0.25)")
    p.add_argument("--workers", type=_positive_int, default=1, help="processes decoding videos in parallel (default 1)")
    p.set_defaults(func=run_video_converter, layout=layout.name)


def run_video_converter(args: argparse.Namespace) -> int:
    """``anrl-ray convert {oulu,casia,replay,msu}``: :func:`convert_videos` into ``OUT/<domain>``."""
    layout = LAYOUTS[args.layout]
    domain = check_dataset_name(args.domain, "--domain")
    settings = FrameSettings(
        frames_per_video=args.frames_per_video,
        img_size=args.img_size,
        margin=args.margin,
        detector=args.detector,
        jpeg_quality=args.jpeg_quality,
        depth_dir=str(args.depth_dir) if args.depth_dir else None,
    )
    out_dir = Path(args.out) / domain
    started = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"{layout.name}: {done}/{total} videos ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    with sigterm_raises():
        manifest = convert_videos(
            layout, Path(args.root), out_dir, settings, domain=domain,
            dev_fraction=getattr(args, "dev_fraction", 0.25), workers=args.workers, overwrite=args.overwrite,
            progress=progress,
        )
    print(
        f"wrote {out_dir}: {manifest['num_rows']} face crops from {manifest['num_videos']} videos; "
        f"{manifest['failed_inputs']} inputs failed (listed in {out_dir / 'conversion_report.json'})"
    )
    return 0


# ----------------------------------------------------------------------------------------
# convert tface


def _register_tface(conv_sub) -> None:
    p = conv_sub.add_parser(
        "tface",
        help="import the reference implementation's (Tencent/TFace) data lists and LMDB",
        description="Import the reference implementation's (Tencent/TFace) frame lists (+ LMDB) into the Parquet format.",
    )
    p.add_argument("--list", dest="lists", action="append", required=True, type=Path, metavar="FILE",
                   help="a reference data list; repeat for several")
    p.add_argument("--split", dest="splits", action="append", choices=SPLITS, metavar="{train,dev,test}",
                   help="split of each --list, in the same order (once for all lists); default: from the paths")
    p.add_argument("--domain", required=True, help="domain name, also the output folder (O, C, I, M, ...)")
    p.add_argument("--lmdb", type=Path, metavar="DIR", help="the reference LMDB (keys = list paths); default: files")
    p.add_argument("--image-root", type=Path, metavar="DIR", help="folder that relative list paths are under (no --lmdb)")
    add_image_options(p, frames=False, margin=2.0)
    p.add_argument("--crop", choices=CROPS, default="none",
                   help="face crop from the list's box or landmarks, as the reference (default none, as its configs)")
    p.add_argument("--live-label", type=int, choices=(0, 1), default=0,
                   help="the list's label for live faces (reference: 0; any other label is spoof)")
    p.add_argument("--depth-replace", dest="depth_rules", action="append", type=_replace_rule, metavar="OLD=NEW",
                   help="depth key = image path with OLD replaced by NEW (first rule that applies; default: the "
                        "reference's replayattack/CASIA_database/MSU-MFSD/Oulu_NPU -> *_depth)")
    p.add_argument("--missing-depth", choices=MISSING_DEPTH, default="fail",
                   help="a live frame without a depth map: fail (listed in the report), template (procedural "
                        "template placed with the list's landmarks/box), none (kept without depth)")
    p.add_argument("--layout", choices=("auto", "none", *LAYOUTS), default="auto",
                   help="raw-dataset naming to read video/subject/attack type from paths (auto: by --domain O/C/I/M)")
    p.add_argument("--default-attack", choices=[a for a in ATTACK_TYPES if a != "live"],
                   help="attack type of spoof frames whose path fits no naming (default: such frames fail)")
    p.set_defaults(func=run_tface)


def run_tface(args: argparse.Namespace) -> int:
    """``anrl-ray convert tface``: :func:`import_lists` into ``OUT/<domain>``."""
    domain = check_dataset_name(args.domain, "--domain")
    lists = list(args.lists)
    splits = list(args.splits or [])
    if len(splits) == 1 and len(lists) > 1:
        splits = splits * len(lists)
    if splits and len(splits) != len(lists):
        raise UserError(f"{len(splits)} --split values for {len(lists)} --list files; give one per list, or one for all")
    if not splits:
        splits = [None] * len(lists)
    if args.lmdb is None and args.image_root is not None and not args.image_root.is_dir():
        raise UserError(f"--image-root {args.image_root} is not a folder")
    settings = ImportSettings(
        img_size=args.img_size,
        crop=args.crop,
        margin=args.margin,
        live_label=args.live_label,
        depth_rules=tuple(args.depth_rules) if args.depth_rules else REFERENCE_DEPTH_RULES,
        missing_depth=args.missing_depth,
        layout=resolve_layout(args.layout, domain),
        default_attack=args.default_attack,
        detector=args.detector,
        jpeg_quality=args.jpeg_quality,
    )
    out_dir = Path(args.out) / domain
    with sigterm_raises():
        manifest = import_lists(lists, splits, out_dir, domain, settings, lmdb_dir=args.lmdb,
                                image_root=args.image_root, overwrite=args.overwrite)
    print(
        f"wrote {out_dir}: {manifest['num_rows']} frames of {manifest['num_videos']} videos; "
        f"{manifest['failed_inputs']} lines failed (listed in {out_dir / 'conversion_report.json'})"
    )
    return 0
