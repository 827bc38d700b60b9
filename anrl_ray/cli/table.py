"""``anrl-ray table``: searches per protocol, searched vs defaults over fresh seeds, table.md/.csv/.tex."""

from __future__ import annotations

import argparse
import shlex
import sys


def table(args: argparse.Namespace) -> int:
    from anrl_ray.errors import UserError
    from anrl_ray.table import run_table

    if "://" in args.storage:
        raise UserError(f"--storage {args.storage}: anrl-ray table writes its re-evaluation runs to a folder; give a local "
                        "or shared-filesystem folder (object-store URIs work for run_search.py, best, evaluate, predict)")

    args.command_line = "anrl-ray table " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["table"] else ""
    run_table(args)
    return 0


def register(sub) -> None:
    from anrl_ray.table import DEFAULT_PROTOCOLS

    p = sub.add_parser("table", help="the protocol table: a search per protocol, then the best configuration and the "
                                     "reference defaults re-trained with fresh seeds (mean ± SEM)")
    p.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS),
                   help=f"comma-separated protocols (default {','.join(DEFAULT_PROTOCOLS)}; MI_C and MI_O also available)")
    p.add_argument("--data", default=None, help="converted data root (DIR/O, DIR/C, ...); default: the synthetic benchmark")
    p.add_argument("--storage", default="runs", help="folder holding the table folder (default ./runs)")
    p.add_argument("--name", default="table", help="table folder: one experiment per protocol + table.* (default table); "
                                                   "running the command again continues it")
    p.add_argument("--seeds", type=int, default=3, help="fresh seeds per configuration (default 3)")
    p.add_argument("--selection", choices=["source_val", "lodo"], default="source_val",
                   help="source_val (default); lodo adds leave-one-source-out columns (holdout runs per trial and seed)")
    p.add_argument("--num-samples", type=int, default=None, help="trials per protocol search (default: the profile's, 8 cpu / 20 full)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per run (default: the profile's)")
    p.add_argument("--profile", default="auto", choices=["auto", "cpu", "full"], help="model/schedule size (auto: full with a GPU)")
    p.add_argument("--workers-per-trial", type=int, default=2, help="Ray Train workers per run (default 2)")
    p.add_argument("--cpus-per-worker", type=float, default=0.5, help="CPUs per Train worker (default 0.5)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Train worker (default 0)")
    p.add_argument("--max-concurrent", type=int, default=0, help="search trials at once (default: as many as fit)")
    p.add_argument("--scheduler", choices=["asha", "none"], default="asha", help="early stopping in the searches (default asha)")
    p.add_argument("--seed", type=int, default=0, help="the searches' seed (default 0)")
    p.add_argument("--address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--wandb", choices=["offline", "online", "off"], default="off", help="W&B logging of the searches (default off)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config key for every run (repeatable)")
    p.set_defaults(func=table)
