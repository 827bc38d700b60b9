"""Weights & Biases runs of an experiment, written from its records (no network, no Ray actor).

``--wandb offline`` (the default) writes one offline W&B run per trial at the end of a search,
from the per-epoch records: the same metrics and config a live logger would send, ready for
``wandb sync EXP/wandb/wandb/offline-run-*``. No logging actor runs beside the trials (each would be
one more process importing W&B per trial). ``--wandb online`` streams live through Ray's
``WandbLoggerCallback`` instead (it needs ``WANDB_API_KEY``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from anrl_ray.records import flat_metrics

WANDB_PROJECT = "anrl-ray"


def write_offline_runs(wandb_dir: Path, group: str, runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """One offline W&B run per trial (id ``GROUP-TRIAL``), each epoch logged as one step; returns the ids.

    Runs already written by an earlier call (a resumed search) are skipped (``exported.json``).
    """
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    wandb_dir.mkdir(parents=True, exist_ok=True)
    done_file = wandb_dir / "exported.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}
    written = []
    for trial, recs in sorted(runs.items()):
        if not recs or done.get(trial) == len(recs):
            continue
        cfg = recs[-1].get("config", {})
        run_id = f"{group}-{trial}"[:120]
        run = wandb.init(project=WANDB_PROJECT, group=group, name=trial, id=run_id, config=cfg, mode="offline",
                         dir=str(wandb_dir), reinit="finish_previous", resume="allow")
        for r in recs:
            ev = {"val": r["val"], "target": r["target_metrics"]}
            try:
                metrics = flat_metrics(int(r["epoch"]), ev, r.get("losses", {}), cfg.get("selection_metric", "hter"))
            except (KeyError, TypeError):  # a metric recorded as null (NaN)
                continue
            run.log(metrics, step=int(r["epoch"]))
        run.finish()
        done[trial] = len(recs)
        written.append(run_id)
    done_file.write_text(json.dumps(done, indent=2))
    return written
