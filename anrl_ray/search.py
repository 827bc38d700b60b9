"""The experiment: a search space -> Ray Tune (Optuna TPE + ASHA) over Ray Train ANRL trials.

Each Tune trial is a function trainable that builds one ``TorchTrainer`` (``trial.run_trial``)
and forwards rank 0's per-epoch reports to Tune (``TuneReportCallback``). The objective is
source-only: ``objective`` = the source-validation score (or, with ``--selection lodo``, the
mean held-out-source score); the target is only ever reported, never optimised. The experiment
folder's layout: ``anrl_ray.experiment``; its end (leaderboard, best/, plots): ``report.finish``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

from anrl_ray.config import TrialConfig, default_profile, load_config, make_config, parse_overrides
from anrl_ray.errors import UserError
from anrl_ray.experiment import STUDY_NAME, Experiment, records_path
from anrl_ray.protocols import PROTOCOLS, get_protocol
from anrl_ray.records import read_records
from anrl_ray.runtime import init_ray, resolve_data_root
from anrl_ray.selection import lodo_scores
from anrl_ray.space import SearchSpace, load_space
from anrl_ray.trial import run_trial

DEFAULT_TRIALS = {"cpu": 8, "full": 20}  # per profile: cpu fits ~15 min on 2 cores (see README)
NOT_PAPER_COMPARABLE = (
    "NOTE: running on the built-in SYNTHETIC benchmark. Its numbers show that the search works; "
    "they are NOT comparable with the paper's OULU/CASIA/Replay/MSU results."
)


def default_space(protocol: str) -> str:
    return "anrl_limited" if len(PROTOCOLS[protocol].sources) == 2 else "anrl"


def lodo_objective(cfg: TrialConfig, group: str, storage: str) -> dict[int, float]:
    """Run the leave-one-source-out trainings of a configuration; epoch -> mean held-out score."""
    runs = {}
    for holdout in cfg.sources:
        name = f"{group}-holdout{holdout}"
        result = run_trial(cfg.replace(holdout=holdout), storage_path=storage, name=name, group=group)
        if result.error:
            raise RuntimeError(f"holdout run {name} failed: {result.error}")
        runs[name] = read_records(records_path(Path(storage) / name))
    return lodo_scores(runs).get(group, {})


def make_trainable(base: dict[str, Any], exp_dir: str, selection: str, keep_checkpoints: int | None):
    """The Tune function trainable: sampled params + fixed base -> one Ray Train run."""

    def trainable(params: dict[str, Any]) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        cfg = make_config({**base, **params}, source="search trial")
        name = tune.get_context().get_trial_name()
        storage = str(Experiment(exp_dir).trials)
        objective = lodo_objective(cfg, name, storage) if selection == "lodo" else None
        # Nothing may follow fit(): when Tune stops a trial early, fit() never returns here.
        run_trial(
            cfg,
            storage_path=storage,
            name=name,
            callbacks=[TuneReportCallback()],
            keep_checkpoints=keep_checkpoints,
            objective_by_epoch=objective,
            group=name,
        )

    return trainable


def study_storage(exp: Experiment):
    """The RDB storage object OptunaSearch needs."""
    import optuna

    return optuna.storages.RDBStorage(exp.study_url)


def finished_trials(exp: Experiment) -> int:
    """Completed trials already in the experiment's Optuna study (0 if none)."""
    import optuna

    if exp.study_url.startswith("sqlite:") and not exp.study_db.exists():
        return 0
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(exp))
    except KeyError:
        return 0
    # trials left RUNNING by an interrupted search will never report: mark them failed
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))


def build_search_alg(space: SearchSpace, exp: Experiment, searcher: str, seed: int, resumed: bool):
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    if searcher == "optuna":
        sampler = optuna.samplers.TPESampler(multivariate=True, seed=seed, n_startup_trials=4)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return OptunaSearch(
        space=space.define_by_run(),
        metric="objective",
        mode="min",
        sampler=sampler,
        study_name=STUDY_NAME,
        storage=study_storage(exp),
        # the reference defaults run first; a resumed study already has them
        points_to_evaluate=None if resumed else [space.defaults()],
    )


def run_search(args: argparse.Namespace) -> Path:
    """Run (or resume) a search and write the leaderboard, best/ and plots. Returns the experiment folder."""
    get_protocol(args.protocol)
    space = load_space(args.space or default_space(args.protocol))
    profile = default_profile() if args.profile == "auto" else args.profile
    if args.num_samples is None:
        args.num_samples = DEFAULT_TRIALS[profile]

    overrides = {
        "protocol": args.protocol,
        "seed": args.seed,
        "num_workers": args.workers_per_trial,
        "cpus_per_worker": args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker,
    }
    if args.epochs:
        overrides["epochs"] = args.epochs
    # validate every option before any expensive step (data generation, Ray start-up)
    base_cfg = load_config(None, {**space.fixed, **overrides, **parse_overrides(args.set)}, profile=profile)

    storage = Path(args.storage).resolve()
    name = args.name or f"{args.protocol}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp = Experiment(storage / name)
    exp_dir = exp.path
    if exp.exists() and not args.resume:
        raise UserError(f"experiment folder {exp_dir} already exists; pass --resume to continue it or choose another --name")
    if args.resume and not exp.search_json.exists():
        raise UserError(f"--resume: {exp_dir} holds no search (search.json missing); check --storage and --name")
    synthetic = not args.data
    data_root = resolve_data_root(args.data)
    if synthetic:
        print(NOT_PAPER_COMPARABLE, flush=True)
    base = base_cfg.replace(data_root=data_root).to_dict()
    exp_dir.mkdir(parents=True, exist_ok=True)

    done = finished_trials(exp) if args.resume else 0
    remaining = max(args.num_samples - done, 0)
    settings = {
        "protocol": args.protocol,
        "selection": args.selection,
        "space": space.path,
        "space_params": space.describe(),
        "profile": profile,
        "base_config": base,
        "data_root": data_root,
        "synthetic": synthetic,
        "num_samples": args.num_samples,
        "searcher": args.searcher,
        "scheduler": args.scheduler,
        "seed": args.seed,
        "study_name": STUDY_NAME,
        "optuna_storage": f"sqlite:///{exp.study_db}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "resumed_from_completed_trials": done,
    }
    exp.write_settings(settings)

    init_ray(args.address)
    if remaining:
        print(f"search {name}: {remaining} trial(s) to run ({done} already done), experiment folder {exp_dir}", flush=True)
        _tune(args, space, base, exp, remaining, resumed=done > 0)
    else:
        print(f"search {name}: all {args.num_samples} trials already done; re-reporting", flush=True)
    _finish(exp, args.selection, top=args.top)
    if args.reeval_top_k:
        from anrl_ray.reeval import reevaluate

        reevaluate(exp_dir, top_k=args.reeval_top_k, seeds=args.seeds, selection=args.selection)
    return exp_dir


def _tune(args, space: SearchSpace, base: dict[str, Any], exp: Experiment, num_samples: int, resumed: bool) -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cfg = make_config(base)
    scheduler = FIFOScheduler()
    if args.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=cfg.epochs,
            grace_period=max(1, min(args.grace_period, cfg.epochs)),
            reduction_factor=2,
        )
    callbacks = []
    if args.wandb != "off":
        callbacks.append(wandb_callback(args.wandb, exp))
    trainable = make_trainable(base, str(exp.path), args.selection, args.keep_checkpoints)
    # The trial driver only waits on its Train workers: it takes no CPU (Tune refuses an all-zero request).
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 1e8})
    max_concurrent = args.max_concurrent or concurrent_trials(cfg)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="objective",
            mode="min",
            search_alg=build_search_alg(space, exp, args.searcher, args.seed, resumed),
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            trial_name_creator=lambda t: f"trial_{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(exp.tune),
            callbacks=callbacks,
            verbose=1,
        ),
    )
    tuner.fit()


def concurrent_trials(cfg: TrialConfig) -> int:
    """How many trials fit at once, leaving one CPU for Ray Data's read tasks (docs/NOTES.md)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    gpus = ray.cluster_resources().get("GPU", 0)
    per_trial_cpu = cfg.num_workers * cfg.cpus_per_worker
    n = math.floor((cpus - 1) / per_trial_cpu) if per_trial_cpu else 8
    if cfg.gpus_per_worker:
        n = min(n, math.floor(gpus / (cfg.num_workers * cfg.gpus_per_worker)))
    return max(1, n)


def wandb_callback(mode: str, exp: Experiment):
    """Weights & Biases logging through Ray: offline by default; online only with a key in the environment."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError("--wandb online needs WANDB_API_KEY in the environment; use --wandb offline (default) or off")
    exp.wandb.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(exp.wandb))
    return WandbLoggerCallback(project="anrl-ray", group=exp.name, mode=mode, dir=str(exp.wandb),
                               excludes=["record"], log_config=True)


def _finish(exp: Experiment, selection: str, top: int = 5) -> None:
    """Leaderboard, best/ and plots (``report.finish``); print the top rows and the path of best/."""
    from anrl_ray.report import finish

    done = finish(exp, selection)
    print("\n".join(done.top_lines(top)))
    if done.best is None:
        print(f"\nleaderboard: {done.leaderboard_md}\nbest/ NOT exported: {done.best_error}")
    else:
        print(f"\nleaderboard: {done.leaderboard_md}\nbest trial exported to: {done.best}")


def check_args(args: argparse.Namespace) -> None:
    """Options the parser cannot check by itself (UserError naming the option)."""
    positive = {"--num-samples": 1 if args.num_samples is None else args.num_samples, "--workers-per-trial": args.workers_per_trial, "--seeds": args.seeds}
    for flag, value in positive.items():
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    for flag, value in {"--cpus-per-worker": args.cpus_per_worker, "--gpus-per-worker": args.gpus_per_worker,
                        "--epochs": args.epochs, "--max-concurrent": args.max_concurrent, "--reeval-top-k": args.reeval_top_k}.items():
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    if args.cpus_per_worker == 0 and args.gpus_per_worker == 0:
        raise UserError("--cpus-per-worker and --gpus-per-worker are both 0: a Train worker needs some resource")
    if args.selection == "lodo" and len(PROTOCOLS.get(args.protocol, PROTOCOLS["OCI_M"]).sources) < 3:
        raise UserError(f"--selection lodo needs >= 3 source domains; {args.protocol} has 2 (use source_val)")
