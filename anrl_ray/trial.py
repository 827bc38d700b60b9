"""One ANRL trial on Ray Train: DDP meta-learning, per-epoch evaluation, records, checkpoints.

Read top to bottom: ``train_loop_per_worker`` is what every Ray Train worker (DDP rank) runs;
``run_trial`` builds the ``TorchTrainer`` around it; ``register_cli`` is ``anrl-ray train``.

Per epoch (every rank):  meta-learning steps on its Ray Data shard -> evaluation of its shards of
the source-validation and target-test sets -> scores gathered on every rank -> metrics ->
``ray.train.report`` (a barrier; rank 0 attaches the checkpoint and appends the record).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from anrl_ray import __version__, metrics
from anrl_ray.config import TrialConfig, default_profile, load_config, make_config
from anrl_ray.data.pipeline import InputSpec, data_config, eval_dataset, iter_eval_batches, meta_batches, steps_per_epoch, training_dataset
from anrl_ray.errors import UserError
from anrl_ray.losses import LossWeights
from anrl_ray.meta import MetaLearner
from anrl_ray.model import build_model
from anrl_ray.records import append_record, read_records, write_records

CHECKPOINT_FILE = "checkpoint.pt"
RECORDS_FILE = "records.jsonl"

# Metrics reported to Ray each epoch (flat names; Tune's scheduler and searcher read ``val_*``).
# ``val_score`` is the selection objective in "lower is better" form, whatever selection_metric is.
VAL_KEYS = ("auc", "eer", "hter_eer", "tpr@fpr=1%")


def checkpoint_dir_name(epoch: int) -> str:
    """Folder name of an epoch's checkpoint inside its run folder: ``RUN/checkpoint_epoch0003``."""
    return f"checkpoint_epoch{epoch:04d}"


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded with every result)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def build_learner(cfg: TrialConfig) -> MetaLearner:
    """The network + class centres + meta step, as the config says (identical on every rank for a seed)."""
    torch.manual_seed(cfg.seed)
    model = build_model(
        in_channels=cfg.in_channels, width=cfg.width, norm=cfg.norm, attention=cfg.attention, gate_tau=cfg.gate_tau
    )
    weights = LossWeights(cls=cfg.w_cls, depth=cfg.w_depth, idcl=cfg.w_idcl, icsl=cfg.w_icsl)
    return MetaLearner(
        model,
        num_domains=len(cfg.sources),
        mode=cfg.meta_mode,
        meta_step_size=cfg.meta_step_size,
        weights=weights,
        centre_momentum=cfg.centre_momentum,
    )


def build_optimizer(cfg: TrialConfig, learner: torch.nn.Module):
    """timm's optimizer and scheduler factories (the reference wires timm's step scheduler)."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    optimizer = create_optimizer_v2(
        learner, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )
    scheduler = None
    if cfg.scheduler != "none":
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=cfg.scheduler,
            num_epochs=cfg.epochs,
            decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate,
            warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.lr * 0.1,
        )
    return optimizer, scheduler


@dataclass
class Scores:
    """Frame-level scores of one evaluation set, gathered from every rank."""

    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)

    def extend(self, other: "Scores") -> None:
        for name in ("scores", "labels", "video_ids", "domains"):
            getattr(self, name).extend(getattr(other, name))


@torch.no_grad()
def score_batches(model: torch.nn.Module, batches: Iterable[dict], device: torch.device, autocast) -> Scores:
    """P(spoof) for every sample of ``batches`` (model in eval mode)."""
    out = Scores()
    for batch in batches:
        with autocast():
            logits = model(batch["image"].to(device)).logits
        out.scores.extend(torch.softmax(logits.float(), dim=1)[:, 1].cpu().tolist())
        out.labels.extend(int(x) for x in batch["label"])
        out.video_ids.extend(f"{d}/{v}" for d, v in zip(batch["domain"], batch["video_id"]))
        out.domains.extend(batch["domain"])
    return out


def gather(local: Scores) -> Scores:
    """Concatenate every rank's scores (no-op in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    merged = Scores()
    for part in parts:
        merged.extend(part)
    return merged


def evaluate_epoch(val: Scores, target: Scores) -> dict[str, Any]:
    """Video-level metrics: source validation, and the target at (a) the source-val threshold and (b) its own EER.

    The threshold that a deployed model would use is chosen on source validation data (its EER
    threshold); the target's own EER threshold gives the literature's (optimistic) HTER.
    """
    v_scores, v_labels, _ = metrics.video_level(val.scores, val.labels, val.video_ids)
    t_scores, t_labels, _ = metrics.video_level(target.scores, target.labels, target.video_ids)
    val_m = metrics.evaluate_scores(v_scores, v_labels)
    thr = float(val_m["eer_threshold"])
    tgt_m = metrics.evaluate_scores(t_scores, t_labels, threshold=thr)
    per_domain = {}
    for d in sorted(set(val.domains)):
        idx = [i for i, x in enumerate(val.domains) if x == d]
        s, y, _ = metrics.video_level([val.scores[i] for i in idx], [val.labels[i] for i in idx], [val.video_ids[i] for i in idx])
        try:
            per_domain[d] = metrics.evaluate_scores(s, y)
        except ValueError as e:  # a tiny dev split with one class: say so in the record rather than crash
            per_domain[d] = {"error": str(e)}
    return {
        "val": {**val_m, "videos": len(v_scores), "frames": len(val.scores), "per_domain": per_domain},
        "target": {**tgt_m, "videos": len(t_scores), "frames": len(target.scores)},
        "thresholds": {"source_val_eer": thr, "target_eer": float(tgt_m["eer_threshold"])},
    }


def flat_metrics(epoch: int, ev: dict[str, Any], losses: dict[str, float], cfg: TrialConfig) -> dict[str, float]:
    """The flat metrics reported to Ray Tune (Tune's scheduler/searcher use ``val_score``)."""
    val, tgt = ev["val"], ev["target"]
    val_score = val["hter_eer"] if cfg.selection_metric == "hter" else 1.0 - val["auc"]
    out = {"epoch": epoch, "val_score": float(val_score)}
    out.update({f"val_{k}": float(val[k]) for k in VAL_KEYS})
    out.update(
        {
            "target_hter": float(tgt["hter"]),  # at the source-validation threshold
            "target_hter_eer": float(tgt["hter_eer"]),  # at the target's own EER threshold (literature)
            "target_auc": float(tgt["auc"]),
            "target_eer": float(tgt["eer"]),
            "target_tpr@fpr=1%": float(tgt["tpr@fpr=1%"]),
        }
    )
    out.update({f"train_{k}": float(v) for k, v in losses.items()})
    return out


def save_checkpoint(path: Path, learner: torch.nn.Module, optimizer, scheduler, epoch: int, gen_states, cfg) -> None:
    """Full training state as plain tensors/containers, loadable with ``torch.load(weights_only=True)``."""
    state = {
        "format": "anrl-ray-checkpoint-v1",
        "epoch": epoch,  # last finished epoch (0-based)
        "learner": learner.state_dict(),  # network + EMA class centres
        "model_config": dict(learner.model.config),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "domain_order_rng": gen_states,  # one torch.Generator state per rank
        "torch_rng": torch.get_rng_state(),
        "config": cfg.to_dict(),
    }
    torch.save(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file or folder safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found (expected a folder with {CHECKPOINT_FILE} or the file itself)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "anrl-ray-checkpoint-v1":
        raise UserError(f"{path} is not an anrl-ray checkpoint (format tag missing)")
    return state


@dataclass
class WorkerContext:
    """Where the loop runs: rank/world/device, its data shards, a resume folder and the report hook.

    Inside Ray Train this comes from ``ray.train`` (``train_loop_per_worker``); a plain process
    (``run_local``: benchmarks, debugging) passes Ray Data iterators and a list-appending report.
    """

    rank: int
    world: int
    device: torch.device
    shards: dict[str, Any]  # "train", "val", "test" -> ray.data.DataIterator
    resume_dir: str | None  # a checkpoint folder to continue from, or None
    report: Callable[[dict[str, Any], str | None, int], None]  # (metrics, checkpoint dir or None, epoch)


def param_checksum(module: torch.nn.Module) -> float:
    """Sum of all parameters in float64: equal on every DDP rank iff no rank drifted."""
    return float(sum(p.detach().double().sum() for p in module.parameters()))


def run_loop(loop_config: dict[str, Any], ctx: WorkerContext) -> None:
    """The training loop of one rank: epochs of meta steps, evaluation, records, checkpoints."""
    cfg = make_config(loop_config["config"])
    run_dir = Path(loop_config["run_dir"])
    rank, world, device = ctx.rank, ctx.world, ctx.device
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    seed_everything(cfg.seed, cfg.deterministic)

    learner = build_learner(cfg).to(device)
    optimizer, scheduler = build_optimizer(cfg, learner)
    domain_rng = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # domain order of each meta step
    start_epoch = 0

    if ctx.resume_dir is not None:
        state = load_checkpoint(ctx.resume_dir)
        if rank == 0:  # the run's records file is rewritten from the checkpoint: no epoch counted twice
            run_dir.mkdir(parents=True, exist_ok=True)
            src = Path(ctx.resume_dir) / RECORDS_FILE
            carried = read_records(src) if src.exists() else []
            # records carried over from another run are renamed to this one (runs are keyed by trial name)
            carried = [{**r, "trial": loop_config.get("trial", ""), "group": loop_config.get("group", ""),
                        "resumed_from": r.get("resumed_from") or r.get("trial")} for r in carried]
            write_records(run_dir / RECORDS_FILE, carried)
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"]:
            scheduler.load_state_dict(state["scheduler"])
        domain_rng.set_state(state["domain_order_rng"][rank])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"] + 1

    # The whole meta step runs inside MetaLearner.forward, so DDP's forward (and its gradient
    # all-reduce hook) runs exactly once per backward; see STACK.md "Meta-learning under DDP".
    ddp = learner
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            learner,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
            broadcast_buffers=False,
        )
    use_bf16 = cfg.bf16 and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext

    steps = cfg.steps_per_epoch or steps_per_epoch(
        cfg.data_root, cfg.sources, batch_per_class=cfg.batch_per_class, world_size=world
    )
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    num_domains = len(cfg.sources)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        learner.train()
        learner.centres.reset()  # the reference resets the class centres at every epoch start
        sums: dict[str, float] = {}
        for batch in meta_batches(
            ctx.shards["train"], num_domains=num_domains, batch_per_class=cfg.batch_per_class, steps=steps,
            seed=cfg.seed, epoch=epoch,
        ):
            order = torch.randperm(num_domains, generator=domain_rng).tolist()
            with autocast():
                loss, logs = ddp(batch["image"].to(device), batch["label"].to(device), batch["depth"].to(device), order)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), cfg.grad_clip)
            optimizer.step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        if scheduler is not None:
            scheduler.step(epoch + 1)
        train_seconds = time.time() - t0

        learner.eval()
        val = gather(score_batches(learner.model, iter_eval_batches(ctx.shards["val"], batch_size=cfg.eval_batch_size), device, autocast))
        tgt = gather(score_batches(learner.model, iter_eval_batches(ctx.shards["test"], batch_size=cfg.eval_batch_size), device, autocast))
        ev = evaluate_epoch(val, tgt)
        losses = {k: v / max(steps, 1) for k, v in sums.items()}
        report = flat_metrics(epoch, ev, losses, cfg)
        # the search objective: source-only by construction (never a target metric)
        report["objective"] = loop_config.get("objective_by_epoch", {}).get(epoch, report["val_score"])
        gen_states, checksums = [domain_rng.get_state()], [param_checksum(learner)]
        if world > 1:
            gen_states, checksums = [None] * world, [None] * world
            dist.all_gather_object(gen_states, domain_rng.get_state())
            dist.all_gather_object(checksums, param_checksum(learner))

        record = {
            "kind": "epoch",
            "trial": loop_config.get("trial", ""),
            "group": loop_config.get("group", ""),
            "epoch": epoch,
            "step": (epoch + 1) * steps,
            "protocol": cfg.protocol,
            "sources": list(cfg.sources),
            "target": cfg.target,
            "holdout": cfg.holdout,
            "val": ev["val"],
            "target_metrics": ev["target"],
            "thresholds": ev["thresholds"],
            "losses": losses,
            "lr": optimizer.param_groups[0]["lr"],
            "steps_per_epoch": steps,
            "world_size": world,
            "rank_param_checksums": checksums,  # equal across ranks unless DDP let them drift
            "train_seconds": round(train_seconds, 3),
            "epoch_seconds": round(time.time() - t0, 3),
            "config": cfg.to_dict(),
            "meta_step": learner.config,  # mode, alpha, weights, interleave flag as the step ran
            "seeds": {"seed": cfg.seed, "data_seed": cfg.seed, "domain_order_seed": [cfg.seed * 1000 + r for r in range(world)]},
            "code_version": loop_config.get("code_version", ""),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            append_record(run_dir / RECORDS_FILE, record)
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp) / CHECKPOINT_FILE, learner, optimizer, scheduler, epoch, gen_states, cfg)
                cfg.save(Path(tmp) / "config.json")
                (Path(tmp) / "metrics.json").write_text(json.dumps({**report, "record": record}, indent=2))
                (Path(tmp) / RECORDS_FILE).write_text((run_dir / RECORDS_FILE).read_text())
                ctx.report(report, tmp, epoch)
        else:
            ctx.report(report, None, epoch)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """What every Ray Train worker (DDP rank) runs."""
    import ray.train
    import ray.train.torch

    tctx = ray.train.get_context()

    def report(metrics_: dict[str, Any], ckpt_dir: str | None, epoch: int) -> None:
        # every rank calls report (a barrier); only rank 0 attaches the checkpoint
        if ckpt_dir is None:
            ray.train.report(metrics_)
        else:
            ray.train.report(
                metrics_, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir), checkpoint_dir_name=checkpoint_dir_name(epoch)
            )

    # Ray Train's own restore (same run name and storage) wins; else an explicit checkpoint folder.
    ckpt = ray.train.get_checkpoint()
    if ckpt is None and loop_config.get("resume_from"):
        ckpt = ray.train.Checkpoint(loop_config["resume_from"])
    with (ckpt.as_directory() if ckpt is not None else nullcontext(None)) as resume_dir:
        ctx = WorkerContext(
            rank=tctx.get_world_rank(),
            world=tctx.get_world_size(),
            device=ray.train.torch.get_device(),
            shards={k: ray.train.get_dataset_shard(k) for k in ("train", "val", "test")},
            resume_dir=resume_dir,
            report=report,
        )
        run_loop(loop_config, ctx)


def run_local(cfg: TrialConfig, run_dir: str | Path, threads: int = 1) -> list[dict[str, Any]]:
    """The same loop in this process (one rank, no Ray Train, no DDP); returns the reported metrics.

    Data still comes from Ray Data (same pipeline, iterated directly); checkpoints are copied to
    ``run_dir/checkpoint_epochNNNN``. Used by benchmarks to measure Ray Train's overhead.
    """
    import shutil

    reports: list[dict[str, Any]] = []

    def report(metrics_: dict[str, Any], ckpt_dir: str | None, epoch: int) -> None:
        reports.append(metrics_)
        if ckpt_dir is not None:
            shutil.copytree(ckpt_dir, Path(run_dir) / checkpoint_dir_name(epoch), dirs_exist_ok=True)

    datasets = build_datasets(cfg)
    ctx = WorkerContext(0, 1, torch.device("cpu"), {k: ds.iterator() for k, ds in datasets.items()}, None, report)
    run_loop({"config": cfg.to_dict(), "run_dir": str(run_dir), "trial": "local", "threads": threads,
              "code_version": code_version()}, ctx)
    return reports


def build_datasets(cfg: TrialConfig, start_epoch: int = 0) -> dict[str, Any]:
    """Ray Data datasets of a trial: source train, source validation, target test.

    ``start_epoch`` (a resumed run) makes the training data of epoch e identical to epoch e of an
    uninterrupted run: the pipeline seeds its shuffle/subsample/augmentation per execution, and
    Ray Data counts executions per dataset from 0, so the count starts at ``start_epoch``.
    """
    spec = InputSpec(img_size=cfg.img_size, in_channels=cfg.in_channels)
    if cfg.holdout:
        # leave-one-source-out: the held-out source domain, all of its training subjects, is the validation set
        val = eval_dataset(cfg.data_root, [cfg.holdout], spec=spec, split="train")
    else:
        val = eval_dataset(cfg.data_root, list(cfg.sources), spec=spec, split="dev")
    train = training_dataset(cfg.data_root, list(cfg.sources), spec=spec, split="train", seed=cfg.seed)
    # Private Ray Data counter (ray 2.60): the execution index that RandomSeedConfig(reseed_after_execution)
    # and the pipeline's per-epoch seeds read. Checked by tests/test_trial.py's resume test.
    train.context._execution_idx = start_epoch
    return {"train": train, "val": val, "test": eval_dataset(cfg.data_root, [cfg.target], spec=spec, split="test")}


def ordered_ingest_options():
    """Ray Train's default ingest options with ``preserve_order``: the equal split then hands the
    same rows to the same rank in every run (the splitter's dispatch is deterministic given order)."""
    import ray.train

    opts = ray.train.DataConfig.default_ingest_options()
    opts.preserve_order = True
    return opts


def latest_epoch(run_dir: str | Path) -> int | None:
    """The last epoch with a checkpoint in a run folder, or None."""
    epochs = sorted(int(p.name.removeprefix("checkpoint_epoch")) for p in Path(run_dir).glob("checkpoint_epoch[0-9]*"))
    return epochs[-1] if epochs else None


def run_trial(
    cfg: TrialConfig,
    *,
    storage_path: str,
    name: str,
    run_dir: str | None = None,
    callbacks: list | None = None,
    resume_from: str | None = None,
    keep_checkpoints: int | None = None,
    objective_by_epoch: dict[int, float] | None = None,
    group: str | None = None,
):
    """Train one configuration with Ray Train and return the ``ray.train.Result``.

    Re-running with the same ``storage_path`` and ``name`` resumes from that run's latest
    checkpoint (Ray Train restores the run); ``resume_from`` starts from a given checkpoint folder.
    ``objective_by_epoch`` (leave-one-source-out selection) replaces the reported ``objective``
    of each epoch; by default the objective is the source-validation score. ``group`` names the
    configuration in the records (runs of one configuration share it).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    if not cfg.data_root:
        raise UserError("config key 'data_root' is empty: pass --data DIR (a converted dataset root)")
    storage_path = storage_path if "://" in storage_path else os.path.abspath(storage_path)
    run_dir = run_dir or os.path.join(storage_path, name)
    # where the data stream must start: after the checkpoint this run will continue from
    if resume_from:
        start_epoch = load_checkpoint(resume_from)["epoch"] + 1
    else:
        last = latest_epoch(os.path.join(storage_path, name)) if "://" not in storage_path else None
        start_epoch = 0 if last is None else last + 1
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "run_dir": run_dir,
            "trial": name,
            "group": group or name,
            "code_version": code_version(),
            "objective_by_epoch": {int(k): float(v) for k, v in (objective_by_epoch or {}).items()},
            # Train V2 deprecates resume_from_checkpoint: the loop loads this folder itself
            "resume_from": str(Path(resume_from).resolve()) if resume_from else None,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            # By recency (never by score: the latest checkpoint must survive, see STACK.md); None keeps all.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep_checkpoints),
            worker_runtime_env={"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}},
        ),
        datasets=build_datasets(cfg, start_epoch),
        # train: equal streaming split in a fixed order (runs repeat on CPU); val/test: every row once
        dataset_config=data_config(execution_options={"train": ordered_ingest_options()}),
    )
    return trainer.fit()


# --------------------------------------------------------------------------- CLI: anrl-ray train


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``anrl-ray train`` and the search."""
    p.add_argument("--protocol", default="OCI_M", help="OCI_M, OMI_C, OCM_I, ICM_O, MI_C or MI_O (default OCI_M)")
    p.add_argument("--data", default=None, help="converted data root (DIR/O, DIR/C, ...); default: the synthetic benchmark")
    p.add_argument("--profile", default="auto", choices=["auto", "cpu", "full"], help="model/schedule size (auto: full with a GPU)")
    p.add_argument("--address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--seed", type=int, default=0)


def resolve_data_root(data: str | None) -> str:
    """The data root to use: the user's, or the synthetic benchmark generated once into a cache folder."""
    if data:
        root = Path(data)
        if not root.is_dir():
            raise UserError(f"--data {data}: no such folder (expected a converted data root with O/, C/, I/, M/)")
        return str(root.resolve())
    from anrl_ray.data.synthetic import ensure_default_benchmark

    print("using the built-in synthetic benchmark (generated once into a cache folder, ~12 s)", flush=True)
    return ensure_default_benchmark()


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start (or connect to) Ray: local by default, dashboard on localhost only."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
    else:
        # The dashboard (State API) must run: without it Ray Train cannot clean up the placement
        # group of a trial that Tune stopped early, and the next trial waits for CPUs forever.
        # It binds to localhost only.
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", runtime_env=env)


def _train_cli(args: argparse.Namespace) -> int:
    profile = default_profile() if args.profile == "auto" else args.profile
    data_root = resolve_data_root(args.data)
    cfg = load_config(
        args.config, args.overrides, profile=profile, base={"protocol": args.protocol, "data_root": data_root, "seed": args.seed}
    )
    out = Path(args.out or f"runs/train-{cfg.protocol}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    init_ray(args.address)
    result = run_trial(cfg, storage_path=str(out), name="run", run_dir=str(out / "run"))
    if result.error:
        print(f"trial failed: {result.error}")
        return 1
    from anrl_ray.selection import select_epoch_source_val

    recs = read_records(out / "run" / RECORDS_FILE)
    best = select_epoch_source_val(recs)
    print(json.dumps({"out": str(out), "selected_by": "source_val", **best.summary()}, indent=2))
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("train", help="train one configuration (no search) with Ray Train")
    add_runtime_args(p)
    p.add_argument("--config", default=None, help="YAML file of config keys (see anrl_ray/config.py)")
    p.add_argument("--out", default=None, help="output folder (default runs/train-PROTOCOL-TIME)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. lr=1e-3 norm=batch")
    p.set_defaults(func=_train_cli)
