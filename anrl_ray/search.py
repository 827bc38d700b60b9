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

from anrl_ray import storage
from anrl_ray.console import Console, progress_callback, say
from anrl_ray.config import TrialConfig, default_profile, load_config, make_config, parse_overrides
from anrl_ray.data.pipeline import share_encoded_splits
from anrl_ray.errors import UserError
from anrl_ray.experiment import STUDY_NAME, Experiment, records_path
from anrl_ray.protocols import PROTOCOLS, get_protocol
from anrl_ray.records import append_record, end_record, epoch_records, read_records
from anrl_ray.runtime import check_data, init_ray, resolve_data_root
from anrl_ray.selection import lodo_scores
from anrl_ray.space import SearchSpace, load_space
from anrl_ray.study import Heartbeat, compare_settings, fail_interrupted, finished_trials, masked_url, resolve_study, study_storage
from anrl_ray.trial import raise_if_diverged, run_trial

DEFAULT_TRIALS = {"cpu": 8, "full": 20}  # per profile: cpu takes ~5.5 min on 2 idle cores (see README)
NOT_PAPER_COMPARABLE = (
    "NOTE: running on the built-in SYNTHETIC benchmark. Its numbers show that the search works; "
    "they are NOT comparable with the paper's OULU/CASIA/Replay/MSU results."
)


def default_space(protocol: str) -> str:
    return "anrl_limited" if len(PROTOCOLS[protocol].sources) == 2 else "anrl"


def lodo_objective(cfg: TrialConfig, group: str, trials: str, max_failures: int = 0) -> dict[int, float]:
    """Run the leave-one-source-out trainings of a configuration; epoch -> mean held-out score."""
    runs = {}
    for holdout in cfg.sources:
        name = f"{group}-holdout{holdout}"
        checked_run(cfg.replace(holdout=holdout), storage_path=trials, name=name, group=group, max_failures=max_failures)
        runs[name] = epoch_records(read_records(records_path(storage.join(trials, name))))
    return lodo_scores(runs).get(group, {})


def tune_is_stopping() -> bool:
    """True inside a Tune trainable whose trial Tune has decided to end (or outside Tune).

    Tune ends a trial (the scheduler's STOP, or the last epoch reached ``max_t``) by calling the
    trainable's ``stop()``, which finishes its session, then terminating the actor; the Train
    controller this trainable owns dies with it, and ``fit()`` may still raise ``ActorDiedError``
    in the window before the process exits. That error is Tune's decision, not a failure.
    """
    from ray.train._internal.session import get_session

    session = get_session()
    return session is None or session.stop_event.is_set()


def checked_run(cfg: TrialConfig, *, storage_path: str, name: str, **kwargs: Any) -> None:
    """``run_trial`` that raises on a failed or diverged run and writes how it failed into its records.

    A run that already diverged (a Tune retry of it) raises at once instead of training again.
    An error raised while Tune is ending the trial is not recorded: the driver's
    ``outcome_callback`` writes how the trial ended.
    """
    run_dir = storage.join(storage_path, name)
    raise_if_diverged(run_dir)
    try:
        result = run_trial(cfg, storage_path=storage_path, name=name, **kwargs)
        error = getattr(result, "error", None)
    except Exception as e:  # noqa: BLE001  Train V2 raises TrainingFailedError; recorded, then re-raised
        if tune_is_stopping():
            raise
        error = e
    if error is not None:
        storage.makedirs(run_dir)
        append_record(records_path(run_dir), end_record("failed", name, f"{type(error).__name__}: {error}"[:2000]))
        raise RuntimeError(f"trial {name} failed: {error}") from (error if isinstance(error, BaseException) else None)
    raise_if_diverged(run_dir)


def make_trainable(base: dict[str, Any], trials: str, selection: str, keep_checkpoints: int | None, max_failures: int = 0):
    """The Tune function trainable: sampled params + fixed base -> one Ray Train run under ``trials``
    (the experiment's trials folder or URI)."""

    def trainable(params: dict[str, Any]) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        cfg = make_config({**base, **params}, source="search trial")
        name = tune.get_context().get_trial_name()
        objective = lodo_objective(cfg, name, trials, max_failures) if selection == "lodo" else None
        # When Tune stops a trial, fit() never returns here (or raises: see tune_is_stopping); nothing essential follows it.
        checked_run(
            cfg,
            storage_path=trials,
            name=name,
            callbacks=[TuneReportCallback()],
            keep_checkpoints=keep_checkpoints,
            objective_by_epoch=objective,
            group=name,
            max_failures=max_failures,
        )

    return trainable


def build_search_alg(space: SearchSpace, exp: Experiment, searcher: str, seed: int, resumed: bool, prior_trials: int = 0):
    """OptunaSearch over the study. On a resume the sampler's seed moves on by the trials already
    drawn, so its random start-up draws do not repeat the first driver's (a seeded sampler would)."""
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    seed = seed + 7919 * prior_trials
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
    import ray

    get_protocol(args.protocol)
    space = load_space(args.space or default_space(args.protocol))
    ray_is_ours = not ray.is_initialized()  # a runtime the caller started (a test, `anrl-ray table`) stays up
    if args.profile == "auto" and args.address:  # a cluster's GPUs decide, not the driver's
        init_ray(args.address)
        profile = "full" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    else:
        profile = default_profile() if args.profile == "auto" else args.profile
    if args.num_samples is None:
        args.num_samples = DEFAULT_TRIALS[profile]

    overrides = {
        "protocol": args.protocol,
        "seed": args.seed,
        "num_workers": args.workers_per_trial,
        "cpus_per_worker": 0.5 if args.cpus_per_worker is None else args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker or 0.0,
    }
    if args.epochs:
        overrides["epochs"] = args.epochs
    # validate every option before any expensive step (data generation, Ray start-up)
    base_cfg = load_config(None, {**space.fixed, **overrides, **parse_overrides(args.set)}, profile=profile)

    storage.configure(getattr(args, "storage_endpoint", None))
    storage.check_reachable(str(args.storage))  # a URI that cannot be written fails here, before anything runs
    name = args.name or f"{args.protocol}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp = Experiment.at(args.storage, name)
    if exp.exists() and not args.resume:
        raise UserError(f"experiment folder {exp.location} already exists; pass --resume to continue it or choose another --name")
    if args.resume and not exp.pull().search_json.exists():
        raise UserError(f"--resume: {exp.location} holds no search (search.json missing); check --storage and --name")
    verbose = bool(getattr(args, "verbose", False))
    with exp.driver_lock(), Console(exp.logs, verbose=verbose) as console:
        try:
            return _run_locked(args, exp, space, profile, base_cfg, verbose)
        finally:
            console.keep_ray_logs()
            if ray_is_ours and ray.is_initialized():
                ray.shutdown()  # inside the console: Ray's last relayed warnings go to the logs, not the terminal
            exp.push()  # an experiment at a URI: the driver's files (logs, study, best/, ...) go there too


def _run_locked(args: argparse.Namespace, exp: Experiment, space: SearchSpace, profile: str, base_cfg: TrialConfig,
                verbose: bool = False) -> Path:
    exp_dir, name = exp.path, exp.name
    synthetic = not args.data
    data_root = resolve_data_root(args.data)
    check_data(data_root, args.protocol)  # before Ray starts: bad data fails here, not inside every trial
    say(f"anrl-ray search {name}: protocol {args.protocol} ({' + '.join(get_protocol(args.protocol).sources)} -> "
        f"{get_protocol(args.protocol).target}), profile {profile}, {args.num_samples} trials, space {space.name}, "
        f"selection {args.selection}")
    say(f"  data: {data_root}{'  (SYNTHETIC)' if synthetic else ''}")
    say(f"  experiment: {exp.location}  (logs: {exp.logs}{', shown live' if verbose else ''})")
    if exp.remote:
        say(f"  driver's local copy (study, logs, files being written): {exp.path}")
    if synthetic:
        say(NOT_PAPER_COMPARABLE)
    base = base_cfg.replace(data_root=data_root).to_dict()
    old = exp.settings() if args.resume else {}
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
        "optuna_storage": masked_url(resolve_study(exp, getattr(args, "study_storage", None), args.resume)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.resume:
        diffs = compare_settings(old, settings)
        if diffs and not args.force:
            raise UserError(f"--resume with settings that differ from {exp.search_json}: {'; '.join(diffs)}. "
                            "Resume with the same options, or pass --force to continue anyway")
        failed, prior = fail_interrupted(exp)
        settings["history"] = [*old.pop("history", []), old]  # every earlier start, never overwritten
        settings["forced_changes"] = diffs
    else:
        failed, prior = 0, 0
    done = finished_trials(exp) if args.resume else 0
    remaining = max(args.num_samples - done, 0)
    settings["resumed_from_completed_trials"] = done
    settings["interrupted_trials_failed"] = failed
    exp.write_settings(settings)

    init_ray(args.address, log_to_driver=verbose)
    share_encoded_splits()  # the trials read the (same) encoded splits once per search, not once each
    sized = size_workers(make_config(base), args.gpus_per_worker, args.cpus_per_worker)
    if sized != make_config(base):
        base = sized.to_dict()
        settings["base_config"] = base
        exp.write_settings(settings)
        say(f"  workers: {sized.num_workers} per trial x {sized.gpus_per_worker:g} GPU + {sized.cpus_per_worker:g} CPU "
            "(sized from the cluster)")
    if remaining:
        say(f"  {remaining} trial(s) to run ({done} already done)")
        _tune(args, space, base, exp, remaining, resumed=prior > 0, prior_trials=prior)
    else:
        say(f"  all {args.num_samples} trials already done; re-reporting")
    if args.reeval_top_k:
        from anrl_ray.reeval import reevaluate

        reevaluate(exp_dir, top_k=args.reeval_top_k, seeds=args.seeds, selection=args.selection)
    _finish(exp, args.selection, top=args.top, wandb_mode=args.wandb)
    return exp_dir


def _tune(args, space: SearchSpace, base: dict[str, Any], exp: Experiment, num_samples: int, resumed: bool,
          prior_trials: int = 0) -> None:
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
    callbacks = [outcome_callback(exp, cfg.epochs), progress_callback(cfg.epochs)]
    if args.wandb == "online":  # live; "offline" writes its runs from the records at the end (no actor)
        callbacks.append(wandb_callback(args.wandb, exp))
    max_failures = args.max_failures if args.max_failures is not None else (2 if args.address else 1)
    trainable = make_trainable(base, exp.trials_location, args.selection, args.keep_checkpoints, max_failures)
    # The trial driver only waits on its Train workers: it takes no CPU (Tune refuses an all-zero request).
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 1e8})
    max_concurrent = args.max_concurrent or concurrent_trials(cfg)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="objective",
            mode="min",
            search_alg=build_search_alg(space, exp, args.searcher, args.seed, resumed, prior_trials),
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            trial_name_creator=lambda t: f"trial_{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=exp.tune_location,
            callbacks=callbacks,
            verbose=1,
            # a trial whose driver died with its node is restarted; its Train run restores from its checkpoint
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )
    with Heartbeat(exp):
        tuner.fit()


def outcome_callback(exp: Experiment, epochs: int):
    """A Tune callback that writes, as each trial ends, how it ended into its run's records.

    Runs in the driver: a trial completed, stopped early by the scheduler, or failed gets its end
    record at once, so after a driver crash the runs without one are exactly the interrupted ones.
    Tune's verdict is the last word: a trial Tune completed whose trainable nevertheless wrote
    "failed" (its Train controller died while Tune was stopping it) gets an "end" record after it.
    A diverged run stays diverged.
    """
    from ray import tune

    from anrl_ray.records import run_state

    class RecordOutcome(tune.Callback):
        def _write(self, trial, error: str | None) -> None:
            name = f"trial_{trial.trial_id}"  # as trial_name_creator names it: the run's folder name
            path = records_path(exp.run_location(name))
            recs = read_records(path) if storage.exists(path) else []
            state = run_state(recs)["state"]
            if state != "unfinished" and not (error is None and state == "failed"):
                return  # failed / diverged / ended already said so
            if error is not None:
                record = end_record("failed", name, error[:2000])
            else:
                done = len(epoch_records(recs))
                record = end_record("end", name, state="completed" if done >= epochs else "stopped early",
                                    reason="" if done >= epochs else f"stopped by the scheduler after {done} of {epochs} epochs")
            storage.makedirs(exp.run_location(name))
            append_record(path, record)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._write(trial, None)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._write(trial, f"trial {trial} failed (see its error file under {exp.tune})")

    return RecordOutcome()


def size_workers(cfg: TrialConfig, gpus_per_worker: float | None, cpus_per_worker: float | None) -> TrialConfig:
    """Fill the resources the user left to us from the cluster: with GPUs, one GPU per Train worker
    (an equal share when there are fewer GPUs than workers) and 2 CPUs for each worker's data."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_worker is not None or gpus <= 0:
        return cfg
    share = 1.0 if gpus >= cfg.num_workers else round(gpus / cfg.num_workers, 4)
    return cfg.replace(gpus_per_worker=share, cpus_per_worker=2.0 if cpus_per_worker is None else cpus_per_worker)


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


def _finish(exp: Experiment, selection: str, top: int = 5, wandb_mode: str = "off") -> None:
    """Leaderboard, best/ and plots (``report.finish``); print the top rows and the path of best/."""
    from anrl_ray.report import finish

    done = finish(exp, selection)
    if exp.remote and exp.study_url.startswith("sqlite:"):
        from anrl_ray.study import export_study

        say(f"  study kept beside the driver ({exp.study_db}); its export goes to {exp.remote}: "
            f"{export_study(exp).name}, {exp.study_db.name}")
    if wandb_mode == "offline":
        from anrl_ray.records import collect_all, epoch_records
        from anrl_ray.tracking import write_offline_runs

        runs = {name: epoch_records(recs) for name, recs in collect_all(exp.trials).items()}
        try:
            write_offline_runs(exp.wandb, exp.name, runs)
        except Exception as e:  # noqa: BLE001  tracking never fails a finished search
            say(f"W&B offline runs not written: {type(e).__name__}: {e}")
    say()
    say("\n".join(done.top_lines(top)))
    say(f"\nleaderboard: {done.leaderboard_md}")
    if done.best is None:
        say(f"best/ NOT exported: {done.best_error}")
    else:
        say(f"best trial exported to: {done.best}")


def check_args(args: argparse.Namespace) -> None:
    """Options the parser cannot check by itself (UserError naming the option)."""
    positive = {"--num-samples": 1 if args.num_samples is None else args.num_samples, "--workers-per-trial": args.workers_per_trial, "--seeds": args.seeds}
    for flag, value in positive.items():
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    for flag, value in {"--cpus-per-worker": args.cpus_per_worker or 0, "--gpus-per-worker": args.gpus_per_worker or 0,
                        "--epochs": args.epochs, "--max-concurrent": args.max_concurrent, "--reeval-top-k": args.reeval_top_k,
                        "--max-failures": args.max_failures or 0}.items():
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    if args.cpus_per_worker == 0 and not args.gpus_per_worker:
        raise UserError("--cpus-per-worker and --gpus-per-worker are both 0: a Train worker needs some resource")
    if "://" in str(args.storage) and args.reeval_top_k:
        raise UserError(f"--reeval-top-k with --storage {args.storage}: re-evaluation runs need a folder; run the search, "
                        "then `anrl-ray reeval` on a local copy, or use a shared filesystem")
    if args.wandb == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError("--wandb online needs WANDB_API_KEY in the environment; use --wandb offline (default) or off")
    if args.selection == "lodo" and len(PROTOCOLS.get(args.protocol, PROTOCOLS["OCI_M"]).sources) < 3:
        raise UserError(f"--selection lodo needs >= 3 source domains; {args.protocol} has 2 (use source_val)")


def tune_runs(exp_dir: str | Path) -> list[Path]:
    """The Ray Tune run folders of an experiment (one per start: the first run and every --resume)."""
    exp = Experiment(exp_dir)
    return sorted(p for p in exp.tune.iterdir() if p.is_dir()) if exp.tune.is_dir() else []


def tune_results(exp_dir: str | Path, run: int = -1):
    """Ray Tune's ``ResultGrid`` of one Tune run of an experiment (``Tuner.restore(...).get_results()``)."""
    from ray import tune

    runs = tune_runs(exp_dir)
    if not runs:
        raise UserError(f"{Experiment(exp_dir).tune} holds no Ray Tune run")
    settings = Experiment(exp_dir).settings()
    trainable = make_trainable(settings.get("base_config", {}), Experiment(exp_dir).trials_location,
                               settings.get("selection", "source_val"), None)
    return tune.Tuner.restore(str(runs[run]), trainable=trainable).get_results()
