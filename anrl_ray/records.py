"""Per-epoch records: one self-describing JSON line per evaluation.

Every record carries its epoch, per-domain metrics, thresholds, losses, the resolved config,
seeds and code version, so model selection and tables are pure functions of the records and
can be recomputed offline (``anrl-ray best``) without retraining.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from anrl_ray import storage
from anrl_ray.experiment import RECORDS_FILE, is_checkpoint_dir

# Metrics reported to Ray each epoch (flat names; Tune's scheduler and searcher read ``objective``).
VAL_KEYS = ("auc", "eer", "hter_eer", "tpr@fpr=1%")


def clean_json(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line, durably (a crash never corrupts earlier lines); ``path``
    may be a storage URI (see ``anrl_ray.storage``)."""
    storage.append_text(path, json.dumps(clean_json(record), sort_keys=True) + "\n")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a records file; a torn last line (crash mid-write) is ignored, any other bad line is an error."""
    lines = storage.read_text(path).splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON record ({e})") from e
    return out


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records to a new file atomically (local: temp file + rename; object store: one put)."""
    storage.write_text(path, "".join(json.dumps(clean_json(r), sort_keys=True) + "\n" for r in records))


# Records of kind "epoch" (the default) hold one evaluation; the other kinds say how a run ended.
# A run whose last word is "failed", "diverged" or "interrupted" is labelled in the leaderboard and
# never selected; "end" (completed, or stopped early by the scheduler) and no word at all are fine.
END_KINDS = ("end", "failed", "diverged", "interrupted")
NOT_SELECTABLE = ("failed", "diverged", "interrupted")


def epoch_records(recs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation records of a run (records of how the run ended left out)."""
    return [dict(r) for r in recs if r.get("kind", "epoch") == "epoch"]


def run_state(recs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How a run ended: ``{"state": ..., "reason": ...}`` from its last end record.

    States: "completed" / "stopped early" (an "end" record), "failed", "diverged", "interrupted",
    or "unfinished" when no end record was written (still running, or ended outside a search).
    """
    ends = [r for r in recs if r.get("kind") in END_KINDS]
    if not ends:
        return {"state": "unfinished", "reason": ""}
    last = ends[-1]
    state = last.get("state") if last["kind"] == "end" else last["kind"]
    return {"state": state or "completed", "reason": last.get("reason", "")}


def selectable(recs: Iterable[Mapping[str, Any]]) -> bool:
    return run_state(recs)["state"] not in NOT_SELECTABLE


def end_record(kind: str, trial: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    """A record saying how a run ended (``kind`` in END_KINDS)."""
    if kind not in END_KINDS:
        raise ValueError(f"unknown end kind {kind!r}; choose one of {END_KINDS}")
    return {"kind": kind, "trial": trial, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def run_folders(root: str | Path, filename: str = RECORDS_FILE) -> dict[str, Path]:
    """Run name (the trial stored in its records, else the folder name) -> its folder, below ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(Path(root).rglob(filename)):
        if is_checkpoint_dir(path.parent):  # copies inside checkpoints
            continue
        recs = read_records(path)
        if recs:
            out[recs[0].get("trial") or path.parent.name] = path.parent
    return out


def collect_records(root: str | Path, filename: str = RECORDS_FILE) -> dict[str, list[dict[str, Any]]]:
    """The epoch records of every selectable run below ``root``, keyed by trial name (else folder).

    Runs that failed, diverged or were interrupted are left out (see :func:`collect_states`),
    so that selection never ranks them; runs without any epoch record too.
    """
    out = {}
    for name, recs in collect_all(root, filename).items():
        epochs = epoch_records(recs)
        if epochs and selectable(recs):
            out[name] = epochs
    return out


def collect_all(root: str | Path, filename: str = RECORDS_FILE) -> dict[str, list[dict[str, Any]]]:
    """Every record (epochs and end records) of every run below ``root``."""
    return {name: read_records(folder / filename) for name, folder in run_folders(root, filename).items()}


def collect_states(root: str | Path, filename: str = RECORDS_FILE) -> dict[str, dict[str, Any]]:
    """Per run: its :func:`run_state` and how many epochs it recorded."""
    return {name: {**run_state(recs), "epochs": len(epoch_records(recs))}
            for name, recs in collect_all(root, filename).items()}


def flat_metrics(epoch: int, ev: Mapping[str, Any], losses: Mapping[str, float], selection_metric: str) -> dict[str, float]:
    """The flat metrics reported to Ray Tune each epoch (``val_score``: lower is better)."""
    val, tgt = ev["val"], ev["target"]
    val_score = val["hter_eer"] if selection_metric == "hter" else 1.0 - val["auc"]
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


def epoch_record(
    *,
    cfg: Any,
    epoch: int,
    steps: int,
    world: int,
    ev: Mapping[str, Any],
    losses: Mapping[str, float],
    lr: float,
    checksums: list[float],
    meta_step: Mapping[str, Any],
    timing: Mapping[str, float],
    loop_config: Mapping[str, Any],
    decode_errors: Mapping[str, Any] | None = None,
    workers: list[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The self-describing record of one finished epoch (``cfg``: the run's TrialConfig)."""
    return {
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
        "losses": dict(losses),
        "lr": lr,
        "steps_per_epoch": steps,
        "world_size": world,
        "rank_param_checksums": checksums,  # equal across ranks unless DDP let them drift
        "workers": list(workers or []),  # per rank: pid, host, Ray node id (where the epoch ran)
        "train_seconds": round(timing["train"], 3),
        "epoch_seconds": round(timing["epoch"], 3),
        "config": cfg.to_dict(),
        "meta_step": dict(meta_step),  # mode, alpha, weights, interleave flag as the step ran
        "seeds": {"seed": cfg.seed, "data_seed": cfg.seed, "domain_order_seed": [cfg.seed * 1000 + r for r in range(world)]},
        "code_version": loop_config.get("code_version", ""),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # rows dropped because their bytes did not decode (count + "shard#row: reason" examples)
        **(decode_errors or {"decode_failures": 0, "decode_failure_examples": []}),
    }
