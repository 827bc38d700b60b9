"""``anrl-ray best / evaluate / predict``: parsers and thin handlers."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from anrl_ray.cli.run import add_endpoint_arg
from anrl_ray.data.faces import DETECTORS
from anrl_ray.scoring import SPLIT_CHOICES
from anrl_ray.selection import METHODS


def best(args: argparse.Namespace) -> int:
    from anrl_ray.checkpoint import METRICS_FILE, SELECTION_FILE, read_json
    from anrl_ray.experiment import Experiment
    from anrl_ray.report import finish

    from anrl_ray import storage

    storage.configure(args.storage_endpoint)
    exp = Experiment(args.experiment).require()  # a folder, or a URI (mirrored locally, results uploaded)
    method = args.selection or exp.settings().get("selection") or "source_val"
    if method == "oracle":
        print(
            "WARNING: --selection oracle picks the epoch with the best TARGET-TEST AUC. It is an upper bound that "
            "uses the test domain, not a result; best/ will be labelled as such.",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            done = finish(exp, method, plots=not args.no_plots)
        finally:
            exp.push()
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    if done.best is None:
        from anrl_ray.errors import UserError

        raise UserError(done.best_error or "best/ was not exported")
    m = read_json(done.best / METRICS_FILE)
    print(json.dumps({**m["summary"], "oracle_upper_bound": m["oracle"]}, indent=2))
    print(read_json(done.best / SELECTION_FILE)["how"])
    print(f"leaderboard: {done.leaderboard_md}")
    if done.plots:
        print("plots: " + ", ".join(str(p) for p in done.plots))
    print(f"best: {storage.join(exp.remote, done.best.name) if exp.remote else done.best}")
    return 0


@contextmanager
def local_checkpoint(args: argparse.Namespace) -> Iterator[str]:
    """The CHECKPOINT argument as a local path: a URI (s3://.../best) is downloaded to a temp folder."""
    from anrl_ray import storage
    from anrl_ray.errors import UserError

    if not storage.is_uri(args.checkpoint):
        yield args.checkpoint
        return
    storage.configure(args.storage_endpoint)
    if not storage.exists(args.checkpoint):
        raise UserError(f"CHECKPOINT {args.checkpoint}: nothing there (a best/ folder, a checkpoint_epochNNNN/ folder "
                        "or a checkpoint.pt); check the URI, the endpoint and the credentials")
    with tempfile.TemporaryDirectory(prefix="anrl-ray-ckpt-") as tmp:
        local = storage.download(args.checkpoint, Path(tmp) / storage.basename(args.checkpoint))
        yield str(local)


def evaluate(args: argparse.Namespace) -> int:
    from anrl_ray.export import evaluate_checkpoint

    with local_checkpoint(args) as checkpoint:
        result = evaluate_checkpoint(checkpoint, args.data, args.domain, args.split, threshold=args.threshold,
                                     batch_size=args.batch_size, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def predict(args: argparse.Namespace) -> int:
    from anrl_ray.errors import UserError
    from anrl_ray.predict import Predictor, check_images

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    check_images(args.images)  # before the model loads: a bad path fails at once
    with local_checkpoint(args) as checkpoint:
        predictor = Predictor(checkpoint, threshold=args.threshold, device=args.device, margin=args.margin,
                              detector=args.detector)
    if not args.no_detect:
        c = predictor.crop
        print(f"note: face crops with margin {c.margin:g}, {c.size} px, JPEG quality {c.jpeg_quality} "
              f"(from {c.source}); threshold {predictor.threshold:.6f}", file=sys.stderr)
    for p in predictor.predict(args.images, detect=not args.no_detect, main_face_only=args.main_face,
                               annotate_dir=args.save_annotated, batch_size=args.batch_size):
        print(p.line(), flush=True)
    return 0


PREDICT_DESCRIPTION = """\
Score images with a trained model. Output on stdout, one line per face, tab-separated:
  PATH  FACE  X,Y,W,H  P(SPOOF)  live|spoof   a detected face (FACE 0 = the largest; box in image pixels)
  PATH  no face found                         an image in which the detector found no face
  PATH  P(SPOOF)  live|spoof                  with --no-detect (each file is one crop)
P(SPOOF) has 6 decimals; spoof when P(SPOOF) >= the threshold. Faces are found with the
converters' detector and cut as the converters cut training frames (square around the face box,
the training data's margin, resized and JPEG-encoded like the stored crops, then resized to the
network input). A note on stderr says which margin was used and where it came from.
Exit 0 when every image was read (images without a face are results, not errors); exit 2 with a
one-line message for a missing, empty or non-image file or an unreadable checkpoint.
"""


def register(sub) -> None:
    p = sub.add_parser("best", help="re-select the best trial/epoch from an experiment's records and export it to EXP/best/")
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="an experiment folder, or its URI (s3://bucket/prefix/NAME)")
    add_endpoint_arg(p)
    p.add_argument("--selection", choices=METHODS, default=None,
                   help="source_val or lodo (default: the search's own); oracle = upper bound using target data")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC and t-SNE plots (no data needed)")
    p.set_defaults(func=best)

    p = sub.add_parser("evaluate", help="score a dataset domain with a checkpoint; JSON metrics at video and frame level")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt "
                   "(a path or a URI such as s3://bucket/prefix/NAME/best)")
    add_endpoint_arg(p)
    p.add_argument("--data", required=True, help="converted data root (DIR/O, DIR/C, ...)")
    p.add_argument("--domain", required=True, help="domain folder under --data, e.g. M")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="test", help="default test")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=evaluate)

    p = sub.add_parser(
        "predict",
        help="P(spoof) of the faces in photos (detected and cropped as in training), or of ready crops",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=PREDICT_DESCRIPTION,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt "
                   "(a path or a URI such as s3://bucket/prefix/NAME/best)")
    add_endpoint_arg(p)
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files (JPEG/PNG; anything OpenCV decodes)")
    p.add_argument("--no-detect", action="store_true",
                   help="the images are face crops already (as the converters store them): score each whole file")
    p.add_argument("--main-face", action="store_true",
                   help="only the largest face of each image, as the converters keep (default: every face found)")
    p.add_argument("--margin", type=float, default=None, metavar="M",
                   help="crop side = face side * (1 + M), M/2 on each side (default: the margin the training data "
                        "was converted with, read from its manifests; else the converters' default 0.25)")
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="face detector (auto = yuface, else the OpenCV Haar cascade; the converters' default)")
    p.add_argument("--save-annotated", metavar="DIR", default=None,
                   help="write DIR/<stem>_annotated.png per image: boxes and 'live 0.12' / 'spoof 0.93' labels "
                        "(DIR is created; inputs are never overwritten)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=32, help="crops scored together (default 32)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=predict)
