"""Multi-seed re-evaluation of the best configurations: the final table of a search.

The top K configurations (by the experiment's selection method) are re-trained with S fresh
seeds each (the same seeds for every configuration, so comparisons between them are paired).
Every re-run picks its epoch with the experiment's own selection method, never the target:

- ``source_val``: the epoch with the best source-validation score of the re-run;
- ``lodo``: for every seed the leave-one-source-out runs are trained too (one per held-out
  source, the same seed), and the epoch is the one ``selection.lodo_scores`` ranks best.

The table reports, per configuration, the mean and the standard error of the mean (SEM =
sample standard deviation with ddof=1, divided by sqrt(S)) of the target metrics over seeds.

A re-run counts only when it finished: as many epoch records as its config's ``epochs`` and no
"failed", "diverged" or "interrupted" end record. Anything else found on disk (a run cut short
by a crash or Ctrl-C, a failed run) is deleted and trained again from scratch, never reused.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from anrl_ray.config import TrialConfig, make_config
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import (
    NOT_SELECTABLE,
    append_record,
    collect_records,
    end_record,
    epoch_records,
    read_records,
    run_state,
)
from anrl_ray.report import leaderboard
from anrl_ray.selection import Selection, lodo_scores, select_epoch_oracle, select_epoch_source_val, select_run

METRICS = (
    ("target_hter@source_val_threshold", "target HTER @ source-val thr"),
    ("target_hter@target_eer", "target HTER @ own EER"),
    ("target_auc", "target AUC"),
    ("target_tpr@fpr=1%", "target TPR@FPR=1%"),
)
FIRST_SEED = 1000  # re-evaluation seeds: 1000, 1001, ... (disjoint from a search's --seed)
HOLDOUT_FOLDER = "holdout"  # REEVAL/holdout/<run>-holdout<D>: leave-one-source-out re-runs

# (config, storage folder, run name, group) -> None: trains one run into storage/name (records.jsonl).
TrainOne = Callable[[TrialConfig, Path, str, str], None]


class ReevalError(RuntimeError):
    """A re-evaluation run did not finish (failed, diverged, or stopped short)."""


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1); SEM is nan for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def fresh_seeds(n: int) -> list[int]:
    """The ``n`` re-evaluation seeds, shared by every configuration (paired comparisons)."""
    return [FIRST_SEED + i for i in range(n)]


def run_finished(recs: Sequence[Mapping[str, Any]], epochs: int) -> bool:
    """Whether a run's records show a finished run: ``epochs`` epoch records and no failure end record."""
    return len(epoch_records(recs)) >= epochs and run_state(recs)["state"] not in NOT_SELECTABLE


def train_run(cfg: TrialConfig, storage: Path, name: str, group: str) -> None:
    """Train one run with Ray Train (``trial.run_trial``) and write how it ended into its records.

    Raises:
        ReevalError: the run failed or diverged (its records say so too).
    """
    from anrl_ray.trial import TrialDiverged, raise_if_diverged, run_trial

    run_dir = storage / name
    try:
        error = run_trial(cfg, storage_path=str(storage), name=name, group=group).error
    except Exception as e:  # noqa: BLE001  Train V2 raises TrainingFailedError; recorded, then re-raised
        error = e
    if error is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        append_record(records_path(run_dir), end_record("failed", name, f"{type(error).__name__}: {error}"[:2000]))
        raise ReevalError(f"re-evaluation run {run_dir} failed: {error}")
    try:
        raise_if_diverged(run_dir)
    except TrialDiverged as e:
        raise ReevalError(f"re-evaluation run {run_dir} diverged: {e}") from None
    done = len(epoch_records(read_records(records_path(run_dir))))
    append_record(records_path(run_dir), end_record("end", name, state="completed" if done >= cfg.epochs else "stopped early"))


def ensure_run(cfg: TrialConfig, storage: Path, name: str, group: str, train_one: TrainOne = train_run) -> list[dict[str, Any]]:
    """The epoch records of a finished run ``storage/name`` of ``cfg``: reused if it finished, else trained.

    A run folder that holds a partial, failed, diverged or interrupted run is deleted first, so
    the run starts from scratch (Ray Train would otherwise resume it from its last checkpoint).

    Raises:
        ReevalError: the run did not finish.
    """
    run_dir = storage / name
    path = records_path(run_dir)
    if path.exists() and run_finished(read_records(path), cfg.epochs):
        return epoch_records(read_records(path))
    if run_dir.exists():
        print(f"re-evaluation: {run_dir} holds an unfinished run; training it again from scratch", flush=True)
        shutil.rmtree(run_dir)
    storage.mkdir(parents=True, exist_ok=True)
    train_one(cfg, storage, name, group)
    recs = read_records(path) if path.exists() else []
    if not run_finished(recs, cfg.epochs):
        state = run_state(recs)
        raise ReevalError(f"re-evaluation run {run_dir} did not finish: {len(epoch_records(recs))} of {cfg.epochs} "
                          f"epochs recorded, state {state['state']} {state['reason']}".rstrip())
    return epoch_records(recs)


def seed_selections(
    cfg: TrialConfig,
    seed: int,
    out: Path,
    name: str,
    methods: Sequence[str],
    train_one: TrainOne = train_run,
) -> dict[str, Selection]:
    """Train (or reuse) one seed's runs of ``cfg`` and select its epoch by each of ``methods``.

    ``methods`` among "source_val" and "lodo" ("lodo" trains one holdout run per source too,
    under ``out/holdout/``); the oracle epoch (best target AUC, an upper bound) is always added.
    """
    cfg = cfg.replace(seed=seed, holdout="")
    full = ensure_run(cfg, out, name, name, train_one)
    sels = {"oracle": select_epoch_oracle(full)}
    if "source_val" in methods:
        sels["source_val"] = select_epoch_source_val(full)
    if "lodo" in methods:
        runs = {name: full}
        for holdout in cfg.sources:
            held = f"{name}-holdout{holdout}"
            runs[held] = ensure_run(cfg.replace(holdout=holdout), out / HOLDOUT_FOLDER, held, name, train_one)
        sel = select_run(full, "lodo", lodo_scores(runs))
        if sel is None:
            raise ReevalError(f"re-evaluation {name}: its holdout runs share no epoch; no lodo selection possible")
        sels["lodo"] = sel
    return sels


def metric_values(selections: Sequence[Selection]) -> dict[str, list[float]]:
    """Per target metric (``METRICS``), its value at each selection (one per seed)."""
    out: dict[str, list[float]] = {}
    for key, _ in METRICS:
        summaries = [s.summary()[key] for s in selections]
        out[key] = [float("nan") if v is None else float(v) for v in summaries]
    return out


def reevaluate(
    exp_dir: str | Path,
    *,
    top_k: int,
    seeds: int,
    selection: str | None = None,
    train_one: TrainOne = train_run,
) -> Path:
    """Re-train the top ``top_k`` configurations with ``seeds`` fresh seeds; write reeval.{md,csv,json}.

    ``selection``: "source_val" or "lodo"; default the experiment's own (``search.json``). Ray
    must already be running (the search starts it) unless ``train_one`` needs none.
    """
    exp = Experiment(exp_dir)
    method = selection or exp.settings().get("selection") or "source_val"
    if method not in ("source_val", "lodo"):
        raise ValueError(f"re-evaluation selects by source_val or lodo, not {method!r}")
    runs = collect_records(exp.trials)
    rows = [r for r in leaderboard(runs, method=method) if r["selection_score"] is not None][:top_k]
    table = []
    for row in rows:
        trial = row["trial"]
        cfg = make_config(runs[trial][0]["config"])
        sels = [seed_selections(cfg, seed, exp.reeval, f"reeval-{trial}-seed{seed}", [method], train_one)[method]
                for seed in fresh_seeds(seeds)]
        values = metric_values(sels)
        entry: dict[str, Any] = {"trial": trial, "seeds": seeds, "protocol": cfg.protocol, "selection": method,
                                 "epochs": " ".join(str(s.epoch) for s in sels)}
        for key, _ in METRICS:
            entry[key + "_mean"], entry[key + "_sem"] = mean_sem(values[key])
        table.append(entry)
    return write_reeval_table(exp, table, seeds, method)


def write_reeval_table(exp: Experiment, table: list[dict[str, Any]], seeds: int, method: str) -> Path:
    """Write ``reeval.md`` / ``.csv`` / ``.json`` of an experiment; returns the Markdown path."""
    how = {"source_val": "by source validation (held-out source subjects)",
           "lodo": "by leave-one-source-domain-out validation (holdout runs of the same seed)"}[method]
    md = [
        f"# Multi-seed re-evaluation ({seeds} fresh seeds per configuration)",
        "",
        f"Each run's epoch selected {how}; no target data used. "
        "Mean ± standard error of the mean (ddof=1) over seeds; HTER, AUC and TPR in %.",
        "",
        "| trial | selection | epochs | " + " | ".join(label for _, label in METRICS) + " |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for e in table:
        cells = [f"{100 * e[k + '_mean']:.2f} ± {100 * e[k + '_sem']:.2f}" for k, _ in METRICS]
        md.append(f"| {e['trial']} | {e['selection']} | {e['epochs']} | " + " | ".join(cells) + " |")
    exp.reeval_table("md").write_text("\n".join(md) + "\n")
    with open(exp.reeval_table("csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["trial"])
        w.writeheader()
        w.writerows(table)
    exp.reeval_table("json").write_text(json.dumps(table, indent=2))
    print("\n".join(md))
    return exp.reeval_table("md")
