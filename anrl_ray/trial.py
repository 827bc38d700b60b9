"""One ANRL trial on Ray Train: DDP meta-learning, per-epoch evaluation, records, checkpoints.

Read top to bottom: ``run_loop`` is what every Ray Train worker (DDP rank) runs;
``train_loop_per_worker`` hands it Ray Train's context; ``run_trial`` builds the ``TorchTrainer``.

Per epoch (every rank):  meta-learning steps on its Ray Data shard -> evaluation of its shards of
the source-validation and target-test sets -> scores gathered on every rank -> metrics ->
``ray.train.report`` (a barrier; rank 0 attaches the checkpoint and appends the record).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from anrl_ray import storage
from anrl_ray.checkpoint import CHECKPOINT_FILE, load_checkpoint, write_checkpoint_folder
from anrl_ray.config import TrialConfig, make_config
from anrl_ray.data.checks import DecodeErrors
from anrl_ray.data.pipeline import (
    InputSpec, data_config, eval_dataset, iter_eval_batches, meta_batches, rank_streams_available, start_at_epoch, steps_per_epoch,
    training_dataset,
)
from anrl_ray.errors import UserError
from anrl_ray.experiment import CHECKPOINT_PREFIX, checkpoint_dir_name, records_path
from anrl_ray.factory import build_learner, build_optimizer, seed_everything
from anrl_ray.records import append_record, end_record, epoch_record, epoch_records, flat_metrics, read_records, write_records
from anrl_ray.runtime import code_version
from anrl_ray.scoring import epoch_metrics, gather, score_batches

RANK_DATASETS = "rank_datasets"  # train_loop_config key: every rank's own datasets, or None (Ray Train splits them)

@dataclass
class WorkerContext:
    """Where the loop runs: rank/world/device, its data shards, a resume folder and the report hook.

    Inside Ray Train this comes from ``ray.train`` (``train_loop_per_worker``); a plain process
    (``run_local``: benchmarks, debugging) passes Ray Data iterators and a list-appending report.
    """

    rank: int
    world: int
    device: torch.device
    shards: dict[str, Any]  # "train", "eval" -> ray.data.DataIterator
    resume_dir: str | None  # a checkpoint folder to continue from, or None
    report: Callable[[dict[str, Any], str | None, int], None]  # (metrics, checkpoint dir or None, epoch)
    node_id: str = ""  # the Ray node this rank runs on (records show where every rank ran)


def param_checksum(module: torch.nn.Module) -> float:
    """Sum of all parameters and BatchNorm running statistics in float64: equal on every DDP rank iff
    no rank drifted (the class centres are rank-local by design, as in the reference, and left out)."""
    bn = (b for n, b in module.named_buffers() if "running_mean" in n or "running_var" in n)
    return float(sum(t.detach().double().sum() for t in (*module.parameters(), *bn)))


def sync_batchnorm_stats(module: torch.nn.Module, world: int) -> None:
    """Average BatchNorm running statistics over the ranks (timm's ``distribute_bn``).

    DDP with ``broadcast_buffers=False`` (as the reference) leaves each rank its own statistics;
    averaging them at every epoch end makes every rank evaluate with, and rank 0 save, one model.
    """
    if world > 1:
        from timm.utils import distribute_bn

        distribute_bn(module, world, reduce=True)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device copy; on CUDA from pinned memory, asynchronously."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def all_finite(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite on every rank (one tiny all-reduce under DDP)."""
    ok = torch.isfinite(loss.detach()).all().float().reshape(1)  # on the loss's device (NCCL needs CUDA)
    if world > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)


def _carried_objectives(resume_dir: str | None, loop_config: dict[str, Any], metric: str) -> list[float]:
    """Objectives of the epochs a resumed run already has (from the checkpoint's records)."""
    if resume_dir is None or not records_path(resume_dir).exists():
        return []
    out = []
    for r in epoch_records(read_records(records_path(resume_dir))):
        try:
            score = flat_metrics(r["epoch"], {"val": r["val"], "target": r["target_metrics"]}, {}, metric)["val_score"]
        except (KeyError, TypeError):  # a metric recorded as null (NaN): no objective for that epoch
            score = float("inf")
        out.append(loop_config.get("objective_by_epoch", {}).get(r["epoch"], score))
    return out


def last_recorded_checkpoint(run_dir: str | Path) -> str | None:
    """The newest checkpoint folder of a run that its records vouch for (written before its record);
    a local path or a URI, like ``run_dir``."""
    path = records_path(run_dir)
    if not storage.exists(path):
        return None
    for r in reversed(epoch_records(read_records(path))):
        folder = storage.join(run_dir, r.get("checkpoint", ""))
        if r.get("checkpoint") and storage.is_file(storage.join(folder, CHECKPOINT_FILE)):
            return folder
    return None


def _epoch_of(path: str | Path) -> int:
    name = Path(str(path)).name
    return int(name.removeprefix(CHECKPOINT_PREFIX)) if name.removeprefix(CHECKPOINT_PREFIX).isdigit() else -1


def _epoch_after(checkpoint: str | Path, local_dir: str | Path | None = None) -> int:
    """The first epoch a run continuing from this checkpoint trains: the folder's name says
    (``checkpoint_epochNNNN``), else its state (read from ``local_dir``, a local copy, if given)."""
    epoch = _epoch_of(checkpoint)
    return (epoch if epoch >= 0 else load_checkpoint(local_dir or checkpoint)["epoch"]) + 1


def _carry_records(resume_dir: str, run_dir: str, loop_config: dict[str, Any]) -> None:
    """Rewrite the run's records from the checkpoint's copy (no epoch counted twice); renamed to this run."""
    storage.makedirs(run_dir)
    src = records_path(resume_dir)
    carried = read_records(src) if src.exists() else []
    carried = [{**r, "trial": loop_config.get("trial", ""), "group": loop_config.get("group", ""),
                "resumed_from": r.get("resumed_from") or r.get("trial")} for r in carried]
    write_records(records_path(run_dir), carried)


def run_loop(loop_config: dict[str, Any], ctx: WorkerContext) -> None:
    """The training loop of one rank: epochs of meta steps, evaluation, records, checkpoints."""
    cfg = make_config(loop_config["config"])
    run_dir = loop_config["run_dir"]  # a folder or a URI (anrl_ray.storage)
    rank, world, device = ctx.rank, ctx.world, ctx.device
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    seed_everything(cfg.seed, cfg.deterministic)

    learner = build_learner(cfg).to(device)
    optimizer, scheduler = build_optimizer(cfg, learner)
    domain_rng = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # domain order of each meta step
    start_epoch = 0
    if ctx.resume_dir is None and rank == 0 and storage.exists(records_path(run_dir)):
        write_records(records_path(run_dir), [])  # a fresh start redoes every epoch: no record counted twice
    if ctx.resume_dir is not None:
        state = load_checkpoint(ctx.resume_dir)
        if rank == 0:
            _carry_records(ctx.resume_dir, run_dir, loop_config)
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"]:
            scheduler.load_state_dict(state["scheduler"])
        domain_rng.set_state(state["domain_order_rng"][rank])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"] + 1

    # The whole meta step runs inside MetaLearner.forward, so DDP's forward (and its gradient
    # all-reduce hook) runs exactly once per backward; see docs/NOTES.md "Meta-learning under DDP".
    ddp = learner
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            learner, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, broadcast_buffers=False,
        )
    use_bf16 = cfg.bf16 and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext
    steps = cfg.steps_per_epoch or steps_per_epoch(cfg.data_root, cfg.sources, batch_per_class=cfg.batch_per_class, world_size=world)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    num_domains = len(cfg.sources)
    objectives = _carried_objectives(ctx.resume_dir, loop_config, cfg.selection_metric)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        learner.train()
        learner.centres.reset()  # the reference resets the class centres at every epoch start
        sums: dict[str, float] = {}
        errors = DecodeErrors()  # rows whose bytes did not decode: dropped, counted, named in the record
        for step, batch in enumerate(meta_batches(ctx.shards["train"], num_domains=num_domains, batch_per_class=cfg.batch_per_class,
                                                  steps=steps, seed=cfg.seed, epoch=epoch, errors=errors)):
            order = torch.randperm(num_domains, generator=domain_rng).tolist()
            x, y, d = (to_device(batch[k], device) for k in ("image", "label", "depth"))
            with autocast():
                loss, logs = ddp(x, y, d, order)
            if not all_finite(loss, world):  # every rank agrees, so all stop at the same step
                if rank == 0:
                    reason = (f"non-finite loss at epoch {epoch} step {step} (loss {float(loss):.4g}; "
                              f"parts {', '.join(f'{k}={float(v):.4g}' for k, v in logs.items())}); training stopped")
                    storage.makedirs(run_dir)
                    append_record(records_path(run_dir), end_record("diverged", loop_config.get("trial", ""), reason,
                                                                    epoch=epoch, step=step, config=cfg.to_dict()))
                return
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
        sync_batchnorm_stats(learner, world)  # one model per evaluation: the one that is saved

        learner.eval()
        # one evaluation stream (one Ray Data coordinator): source validation and target test rows,
        # told apart by domain (the target is never a source, nor a held-out source)
        scored = gather(score_batches(learner.model, iter_eval_batches(ctx.shards["eval"], batch_size=cfg.eval_batch_size,
                                                                       errors=errors), device, autocast))
        tgt, val = scored.split(lambda domain: domain == cfg.target)
        ev = epoch_metrics(val, tgt)
        losses = {k: v / max(steps, 1) for k, v in sums.items()}
        report = flat_metrics(epoch, ev, losses, cfg.selection_metric)
        # The search objective, source-only by construction (never a target metric): the best epoch so
        # far, as selection picks the best epoch of a trial; Optuna's value and ASHA's rungs see that.
        objectives.append(loop_config.get("objective_by_epoch", {}).get(epoch, report["val_score"]))
        report["objective"] = min(objectives)
        report["objective_this_epoch"] = objectives[-1]
        where = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "node_id": ctx.node_id}
        gen_states, checksums, decode, workers = [domain_rng.get_state()], [param_checksum(learner)], [errors.as_dict()], [where]
        if world > 1:
            gen_states, checksums, decode, workers = ([None] * world for _ in range(4))
            dist.all_gather_object(gen_states, domain_rng.get_state())
            dist.all_gather_object(checksums, param_checksum(learner))
            dist.all_gather_object(decode, errors.as_dict())
            dist.all_gather_object(workers, where)
        merged = DecodeErrors()
        for part in decode:
            merged.update(part)
        record = epoch_record(
            cfg=cfg, epoch=epoch, steps=steps, world=world, ev=ev, losses=losses, lr=optimizer.param_groups[0]["lr"],
            checksums=checksums, meta_step=learner.config, loop_config=loop_config, decode_errors=merged.as_dict(),
            workers=workers,
            timing={"train": train_seconds, "epoch": time.time() - t0},
        )
        if rank == 0:
            # The checkpoint is complete (and persisted by the report) before its record is appended:
            # a record always points at a checkpoint that exists. The checkpoint carries the run's
            # records up to and including this epoch, so a restart from it counts every epoch once.
            record["checkpoint"] = checkpoint_dir_name(epoch)
            storage.makedirs(run_dir)
            so_far = read_records(records_path(run_dir)) if storage.exists(records_path(run_dir)) else []
            with tempfile.TemporaryDirectory() as tmp:
                write_records(records_path(tmp), [*so_far, record])
                write_checkpoint_folder(Path(tmp), learner, optimizer, scheduler, epoch, gen_states, cfg,
                                        {**report, "record": record, "video_scores": ev["video_scores"]}, None)
                ctx.report(report, tmp, epoch)
            append_record(records_path(run_dir), record)
        else:
            ctx.report(report, None, epoch)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """What every Ray Train worker (DDP rank) runs."""
    import ray
    import ray.train
    import ray.train.torch

    tctx = ray.train.get_context()
    own_data = loop_config.pop(RANK_DATASETS, None)  # this rank's own datasets (see run_trial), or Ray Train's shards

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
    # After a worker or node loss Ray Train may not yet know the last checkpoint a rank persisted (it
    # polls the workers): a checkpoint with a record in the run's records file is complete, use the
    # newer of the two.
    recorded = last_recorded_checkpoint(loop_config["run_dir"])
    if recorded is not None and (ckpt is None or _epoch_of(ckpt.path) < _epoch_of(recorded)):
        ckpt = ray.train.Checkpoint(recorded)
    with (ckpt.as_directory() if ckpt is not None else nullcontext(None)) as resume_dir:
        if own_data:
            data = own_data[tctx.get_world_rank()]
            if resume_dir is not None:
                # the stream continues after the checkpoint, also when Ray Train restarted the workers
                # within this run: epoch e gets the data of epoch e of an uninterrupted run
                start_at_epoch(data["train"], _epoch_after(ckpt.path, resume_dir))
            shards = {k: ds.iterator() for k, ds in data.items()}
        else:
            shards = {k: ray.train.get_dataset_shard(k) for k in ("train", "eval")}
        ctx = WorkerContext(
            rank=tctx.get_world_rank(),
            world=tctx.get_world_size(),
            device=ray.train.torch.get_device(),
            shards=shards,
            resume_dir=resume_dir,
            report=report,
            node_id=ray.get_runtime_context().get_node_id(),
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


def build_datasets(cfg: TrialConfig, start_epoch: int = 0, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Ray Data datasets of a trial: source train, and source validation + target test as one "eval" set.

    ``start_epoch`` (a resumed run) makes the training data of epoch e identical to epoch e of an
    uninterrupted run: the pipeline seeds its shuffle/subsample/augmentation per execution, and
    Ray Data counts executions per dataset from 0, so the count starts at ``start_epoch``.
    ``shard=(rank, world)``: that rank's own share of each (see :func:`rank_streams_available`).
    """
    spec = InputSpec(img_size=cfg.img_size, in_channels=cfg.in_channels)
    if cfg.holdout:
        # leave-one-source-out: the held-out source domain, all of its training subjects, is the validation set
        val = eval_dataset(cfg.data_root, [cfg.holdout], spec=spec, split="train", shard=shard)
    else:
        val = eval_dataset(cfg.data_root, list(cfg.sources), spec=spec, split="dev", shard=shard)
    train = training_dataset(cfg.data_root, list(cfg.sources), spec=spec, split="train", seed=cfg.seed, shard=shard)
    start_at_epoch(train, start_epoch)
    # val and test in one dataset: one stream (one split coordinator with DataConfig) instead of two
    test = eval_dataset(cfg.data_root, [cfg.target], spec=spec, split="test", shard=shard)
    return {"train": train, "eval": val.union(test)}


def ordered_ingest_options():
    """Ray Train's default ingest options with ``preserve_order``: the equal split then hands the
    same rows to the same rank in every run (the splitter's dispatch is deterministic given order)."""
    import ray.train

    opts = ray.train.DataConfig.default_ingest_options()
    opts.preserve_order = True
    return opts


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
    max_failures: int = 0,
):
    """Train one configuration with Ray Train and return the ``ray.train.Result``.

    ``max_failures``: restarts of the worker group after a worker or node died; each restart
    continues from the run's latest checkpoint (its records are rewritten from the checkpoint's
    copy, so every epoch is recorded once).

    Re-running with the same ``storage_path`` and ``name`` resumes from that run's latest
    checkpoint (Ray Train restores the run); ``resume_from`` starts from a given checkpoint folder.
    ``objective_by_epoch`` (leave-one-source-out selection) replaces the reported ``objective``
    of each epoch; by default the objective is the source-validation score. ``group`` names the
    configuration in the records (runs of one configuration share it).
    """
    import ray.train

    if not cfg.data_root:
        raise UserError("config key 'data_root' is empty: pass --data DIR (a converted dataset root)")
    storage_path = storage_path if storage.is_uri(storage_path) else os.path.abspath(storage_path)
    run_dir = run_dir or storage.join(storage_path, name)
    # where the data stream must start: after the checkpoint this run will continue from
    continue_from = resume_from or last_recorded_checkpoint(run_dir)
    start_epoch = 0 if continue_from is None else _epoch_after(continue_from)
    # In a search (the splits cached and shared) every rank executes its own share of the data;
    # otherwise Ray Train splits one stream per dataset (DataConfig: a dataset manager and a split
    # coordinator per dataset, several seconds more of each trial's start-up).
    domains = [*cfg.sources, cfg.target, *([cfg.holdout] if cfg.holdout else [])]
    own_data = None
    if rank_streams_available(cfg.data_root, domains):
        own_data = [build_datasets(cfg, start_epoch, shard=(r, cfg.num_workers)) for r in range(cfg.num_workers)]
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    trainer = _trainer_class(own_data is None)(
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
            RANK_DATASETS: own_data,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.gpus_per_worker > 0, resources_per_worker=resources,
            placement_strategy=cfg.placement,
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            # By recency (never by score: the latest checkpoint must survive, see docs/NOTES.md); None keeps all.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            worker_runtime_env={"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", **storage.shared_env()}},
        ),
        datasets=None if own_data else build_datasets(cfg, start_epoch),
        # train: equal streaming split in a fixed order (runs repeat on CPU); val/test: every row once
        dataset_config=None if own_data else data_config(exact=("eval",), execution_options={"train": ordered_ingest_options()}),
    )
    return trainer.fit()


def _trainer_class(ray_datasets: bool) -> type:
    """``TorchTrainer``; without Ray Train datasets (every rank reads its own), one that starts no
    dataset manager: Ray Train 2.60 starts that actor per run even when it has no dataset to manage
    (a process start and imports on a small machine's start-up path, docs/NOTES.md)."""
    from ray.train.torch import TorchTrainer

    if ray_datasets:
        return TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback  # private (ray 2.60); tests/test_trial.py

    class OwnDataTrainer(TorchTrainer):
        def _create_default_callbacks(self) -> list:
            return [c for c in super()._create_default_callbacks() if not isinstance(c, DatasetsCallback)]

    return OwnDataTrainer


class TrialDiverged(RuntimeError):
    """The loss became non-finite; the run's last record says where."""


def raise_if_diverged(run_dir: str | Path) -> None:
    """Raise :class:`TrialDiverged` with the reason when a run's records end with a divergence."""
    from anrl_ray.records import run_state

    path = records_path(run_dir)
    if storage.exists(path):
        state = run_state(read_records(path))
        if state["state"] == "diverged":
            raise TrialDiverged(f"{storage.basename(run_dir)}: {state['reason']}")
