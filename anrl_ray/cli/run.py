"""``anrl-ray train`` / ``anrl-ray search`` (= ``run_search.py``): parsers and thin handlers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from anrl_ray.errors import UserError


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``anrl-ray train`` and the search."""
    p.add_argument("--protocol", default="OCI_M", help="OCI_M, OMI_C, OCM_I, ICM_O, MI_C or MI_O (default OCI_M)")
    p.add_argument("--data", default=None, help="converted data root (DIR/O, DIR/C, ...); default: the synthetic benchmark")
    p.add_argument("--profile", default="auto", choices=["auto", "cpu", "full"], help="model/schedule size (auto: full with a GPU)")
    p.add_argument("--address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--seed", type=int, default=0)


def add_endpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-endpoint", default=None, metavar="URL",
                   help="S3-compatible server for s3:// locations, e.g. http://127.0.0.1:9000 (MinIO, Ceph); "
                        "default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS")


def add_search_args(p: argparse.ArgumentParser) -> None:
    from anrl_ray.space import shipped_space_names

    add_runtime_args(p)
    p.add_argument("--space", default=None, help="search space YAML file, or the name of a shipped space "
                   f"({', '.join(shipped_space_names())}; default: anrl, or anrl_limited for 2 sources)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="trials in total (default: 8 with the cpu profile, about 5.5 min on 2 idle cores; 20 full)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: as many as fit, one CPU left for data)")
    p.add_argument("--workers-per-trial", type=int, default=2, help="Ray Train workers (DDP ranks) per trial (default 2)")
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs per Train worker, fractions allowed (default 0.5; 2 when the workers get GPUs)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs per Train worker, fractions allowed (default: sized from the cluster: 1 per worker "
                        "when it has enough GPUs, else an equal share; 0 without GPUs)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per trial (default: the profile's, 4 on CPU, 50 full)")
    p.add_argument("--scheduler", choices=["asha", "none"], default="asha", help="early stopping (default asha)")
    p.add_argument("--grace-period", type=int, default=2, help="ASHA grace period in epochs (default 2)")
    p.add_argument("--searcher", choices=["optuna", "random"], default="optuna", help="default: Optuna TPE (multivariate, seeded)")
    p.add_argument("--selection", choices=["source_val", "lodo"], default="source_val",
                   help="objective and model selection, source data only (oracle is only a reported column)")
    p.add_argument("--storage", default="runs",
                   help="where experiments go: a folder (default ./runs) or a URI pyarrow opens, e.g. s3://bucket/prefix "
                        "(AWS credentials from the environment of every node; a cluster needs one of the two)")
    add_endpoint_arg(p)
    p.add_argument("--name", default=None, help="experiment name (default PROTOCOL-TIME)")
    p.add_argument("--study-storage", default=None, metavar="URL",
                   help="Optuna RDB URL for the study, e.g. postgresql://user@host/db for a cluster "
                        "(default: SQLite in the experiment folder; a password belongs in PGPASSWORD)")
    p.add_argument("--resume", action="store_true", help="continue the experiment --storage/--name (Optuna keeps its history)")
    p.add_argument("--wandb", choices=["offline", "online", "off"], default="offline", help="default offline (no network)")
    p.add_argument("--keep-checkpoints", type=int, default=None, help="checkpoints kept per trial, by recency (default all)")
    p.add_argument("--max-failures", type=int, default=None,
                   help="restarts of a trial after a worker, node or trial driver died, each from its last checkpoint "
                        "(default 1 locally, 2 with --address)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, the trials' and the libraries' logs live (they always go to EXP/logs/)")
    p.add_argument("--force", action="store_true", help="--resume even though settings differ from the experiment's")
    p.add_argument("--reeval-top-k", type=int, default=0, help="re-train the top K configurations with fresh seeds")
    p.add_argument("--seeds", type=int, default=3, help="fresh seeds per configuration for --reeval-top-k (default 3)")
    p.add_argument("--top", type=int, default=5, help="leaderboard rows to print (default 5)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config key for every trial (repeatable)")


def search(args: argparse.Namespace) -> int:
    from anrl_ray.search import check_args, run_search

    check_args(args)
    run_search(args)
    return 0


def search_parser(prog: str = "run_search.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Ray Tune + Optuna search over ANRL hyperparameters; trials are Ray Train DDP runs."
    )
    add_search_args(p)
    return p


def search_main(argv: list[str] | None = None) -> int:
    """``run_search.py``: the search, exit code 2 with a one-line message on bad input."""
    from anrl_ray.runtime import quiet_environment

    quiet_environment()
    args = search_parser().parse_args(argv)
    try:
        return search(args)
    except UserError as e:
        print(f"run_search.py: error: {e}", file=sys.stderr)
        return 2


def train(args: argparse.Namespace) -> int:
    from anrl_ray.config import default_profile, load_config
    from anrl_ray.experiment import records_path
    from anrl_ray.records import epoch_records, read_records
    from anrl_ray.runtime import check_data, init_ray, resolve_data_root
    from anrl_ray.selection import select_epoch_source_val
    from anrl_ray.trial import run_trial

    profile = default_profile() if args.profile == "auto" else args.profile
    data_root = resolve_data_root(args.data)
    cfg = load_config(
        args.config, args.overrides, profile=profile, base={"protocol": args.protocol, "data_root": data_root, "seed": args.seed}
    )
    check_data(data_root, cfg.protocol)
    out = Path(args.out or f"runs/train-{cfg.protocol}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    init_ray(args.address)
    try:
        result = run_trial(cfg, storage_path=str(out), name="run", run_dir=str(out / "run"))
        error = result.error
    except Exception as e:  # noqa: BLE001  Train V2 raises on a failed run: one line, exit 2
        error = e
    if error is not None:
        raise UserError(f"the run failed ({type(error).__name__}: {str(error).strip().splitlines()[-1][:500]}); "
                        f"its records and logs are in {out}")
    raise_if_diverged_user(out / "run")
    recs = epoch_records(read_records(records_path(out / "run")))
    if not recs:
        raise UserError(f"the run wrote no epoch record; see {out}")
    best = select_epoch_source_val(recs)
    print(json.dumps({"out": str(out), "selected_by": "source_val", **best.summary()}, indent=2))
    return 0


def raise_if_diverged_user(run_dir: Path) -> None:
    from anrl_ray.trial import TrialDiverged, raise_if_diverged

    try:
        raise_if_diverged(run_dir)
    except TrialDiverged as e:
        raise UserError(f"the run diverged: {e}; lower lr or the loss weights") from None


def register(sub) -> None:
    p = sub.add_parser("train", help="train one configuration (no search) with Ray Train")
    add_runtime_args(p)
    p.add_argument("--config", default=None, help="YAML file of config keys (see anrl_ray/config.py)")
    p.add_argument("--out", default=None, help="output folder (default runs/train-PROTOCOL-TIME)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. lr=1e-3 norm=batch")
    p.set_defaults(func=train)

    p = sub.add_parser("search", help="run a hyperparameter search (same as run_search.py)")
    add_search_args(p)
    p.set_defaults(func=search)
