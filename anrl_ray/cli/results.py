"""``anrl-ray best / evaluate / predict``: parsers and thin handlers."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from anrl_ray.scoring import SPLIT_CHOICES
from anrl_ray.selection import METHODS


def best(args: argparse.Namespace) -> int:
    from anrl_ray.checkpoint import METRICS_FILE, SELECTION_FILE, read_json
    from anrl_ray.experiment import Experiment
    from anrl_ray.report import finish

    exp = Experiment(args.experiment).require()
    method = args.selection or exp.settings().get("selection") or "source_val"
    if method == "oracle":
        print(
            "WARNING: --selection oracle picks the epoch with the best TARGET-TEST AUC. It is an upper bound that "
            "uses the test domain, not a result; best/ will be labelled as such.",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = finish(exp, method, plots=not args.no_plots)
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
    print(f"best: {done.best}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from anrl_ray.export import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data, args.domain, args.split, threshold=args.threshold,
                                 batch_size=args.batch_size, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def predict(args: argparse.Namespace) -> int:
    from anrl_ray.export import predict_images

    for name, score, decision in predict_images(args.checkpoint, args.images, threshold=args.threshold,
                                                batch_size=args.batch_size, device=args.device):
        print(f"{name}\t{score:.6f}\t{decision}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("best", help="re-select the best trial/epoch from an experiment's records and export it to EXP/best/")
    p.add_argument("experiment", metavar="EXPERIMENT_DIR")
    p.add_argument("--selection", choices=METHODS, default=None,
                   help="source_val or lodo (default: the search's own); oracle = upper bound using target data")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC and t-SNE plots (no data needed)")
    p.set_defaults(func=best)

    p = sub.add_parser("evaluate", help="score a dataset domain with a checkpoint; JSON metrics at video and frame level")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt")
    p.add_argument("--data", required=True, help="converted data root (DIR/O, DIR/C, ...)")
    p.add_argument("--domain", required=True, help="domain folder under --data, e.g. M")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="test", help="default test")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("predict", help="P(spoof) of face crops: path<TAB>score<TAB>live|spoof")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="face crop image files (JPEG/PNG)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=predict)
