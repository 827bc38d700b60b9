"""Model selection as pure functions over records (DomainBed style).

Three methods, never mixed up; every reported number carries its method's name:

- ``source_val`` (default): the epoch and configuration with the best metric on held-out
  SOURCE subjects (the dev split). No target data is looked at.
- ``lodo``: leave-one-source-domain-out. For a configuration, D extra runs each train on D-1
  sources and validate on the held-out source (records with ``holdout`` set, produced by
  ``run_search.py --selection lodo`` or ``anrl-ray train ... holdout=X``); the epoch with the
  best mean held-out score is chosen, and the target numbers come from the configuration's
  run on all D sources at that epoch.
- ``oracle``: the epoch and configuration with the best TARGET-test AUC, as the reference code
  selects. An upper bound, reported in its own labelled column, never an objective.

A "run" is the list of per-epoch records of one training run; runs are keyed by trial name.
Records of one configuration share ``record["group"]`` (the trial name when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

METHODS = ("source_val", "lodo", "oracle")
Run = Sequence[Mapping[str, Any]]


def val_score(record: Mapping[str, Any]) -> float:
    """Source-validation objective of one record, lower is better (HTER at its EER, or 1 - AUC)."""
    metric = record["config"].get("selection_metric", "hter")
    val = record["val"]
    value = val["hter_eer"] if metric == "hter" else 1.0 - val["auc"]
    return float("inf") if value is None else float(value)


def oracle_score(record: Mapping[str, Any]) -> float:
    """Target-test objective of the reference code (best AUC), lower is better."""
    auc = record["target_metrics"]["auc"]
    return float("inf") if auc is None else -float(auc)


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection method: which run and epoch, and that epoch's record."""

    method: str
    trial: str
    epoch: int
    score: float  # the selection objective (lower is better), in the method's own terms
    record: Mapping[str, Any]

    def summary(self) -> dict[str, Any]:
        t = self.record["target_metrics"]
        return {
            "selection": self.method,
            "trial": self.trial,
            "epoch": self.epoch,
            "selection_score": self.score,
            "val_hter_eer": self.record["val"]["hter_eer"],
            "val_auc": self.record["val"]["auc"],
            "target_hter@source_val_threshold": t["hter"],
            "target_hter@target_eer": t["hter_eer"],
            "target_auc": t["auc"],
            "target_tpr@fpr=1%": t["tpr@fpr=1%"],
            # 95 % bootstrap intervals over target videos; ISO/IEC 30107-3 (worst attack type)
            "target_hter_ci95": t.get("target_hter_ci95"),
            "target_auc_ci95": t.get("target_auc_ci95"),
            "target_apcer_max": t.get("apcer_max"),
            "target_apcer_max_type": t.get("apcer_max_type"),
            "target_bpcer": t.get("bpcer_iso", t.get("bpcer")),
            "target_acer_iso": t.get("acer_iso"),
            "threshold": self.record["thresholds"]["source_val_eer"],
        }


def _val_tiebreak(record: Mapping[str, Any]) -> float:
    """Second source-only criterion: HTER on a small dev split ties often; higher val AUC wins."""
    auc = record["val"].get("auc")
    return 0.0 if auc is None else -float(auc)


def _best(run: Run, key) -> Mapping[str, Any]:
    if not run:
        raise ValueError("a run with no records cannot be selected from")
    # ties: the source-validation AUC, then the earlier epoch (fewer updates)
    return min(run, key=lambda r: (key(r), _val_tiebreak(r), r["epoch"]))


def select_epoch_source_val(run: Run) -> Selection:
    """Best epoch of one run by source validation."""
    r = _best(run, val_score)
    return Selection("source_val", r.get("trial", ""), int(r["epoch"]), val_score(r), r)


def select_epoch_oracle(run: Run) -> Selection:
    """Best epoch of one run by target-test AUC (upper bound only)."""
    r = _best(run, oracle_score)
    return Selection("oracle", r.get("trial", ""), int(r["epoch"]), oracle_score(r), r)


def _full_runs(runs: Mapping[str, Run]) -> dict[str, Run]:
    """Runs trained on every source (no held-out domain)."""
    return {name: run for name, run in runs.items() if run and not run[0].get("holdout")}


def select_source_val(runs: Mapping[str, Run]) -> Selection:
    """Best (trial, epoch) over all full runs by source validation."""
    full = _full_runs(runs)
    if not full:
        raise ValueError("no run trained on all source domains among the records")
    best = [select_epoch_source_val(run) for run in full.values()]
    return min(best, key=lambda s: (s.score, _val_tiebreak(s.record), s.trial))


def select_oracle(runs: Mapping[str, Run]) -> Selection:
    """Best (trial, epoch) over all full runs by target-test AUC (upper bound only)."""
    full = _full_runs(runs)
    if not full:
        raise ValueError("no run trained on all source domains among the records")
    best = [select_epoch_oracle(run) for run in full.values()]
    return min(best, key=lambda s: (s.score, s.trial))


def lodo_scores(runs: Mapping[str, Run]) -> dict[str, dict[int, float]]:
    """Per configuration group: epoch -> mean held-out-source score over its holdout runs.

    Only epochs present in every holdout run of the group count; a group whose holdout runs
    do not cover every source of its protocol is left out (an incomplete LODO estimate).
    """
    groups: dict[str, list[Run]] = {}
    for run in runs.values():
        if run and run[0].get("holdout"):
            groups.setdefault(run[0].get("group") or run[0].get("trial", ""), []).append(run)
    out: dict[str, dict[int, float]] = {}
    for group, held in groups.items():
        first = held[0][0]
        sources = set(first["sources"]) | {first["holdout"]}
        if {run[0]["holdout"] for run in held} != sources:
            continue
        per_epoch = [{int(r["epoch"]): val_score(r) for r in run} for run in held]
        common = set.intersection(*(set(p) for p in per_epoch))
        out[group] = {e: sum(p[e] for p in per_epoch) / len(per_epoch) for e in sorted(common)}
    return out


def select_lodo(runs: Mapping[str, Run]) -> Selection:
    """Best (configuration, epoch) by mean held-out-source score; target numbers from its full run."""
    scores = lodo_scores(runs)
    full_by_group = {(run[0].get("group") or name): run for name, run in _full_runs(runs).items()}
    candidates = []
    for group, per_epoch in scores.items():
        full = full_by_group.get(group)
        if full is None:
            continue
        by_epoch = {int(r["epoch"]): r for r in full}
        for epoch, score in per_epoch.items():
            if epoch in by_epoch:
                candidates.append((score, group, epoch, by_epoch[epoch]))
    if not candidates:
        raise ValueError(
            "lodo selection needs, per configuration, one run holding out each source domain plus one run "
            "on all sources (run_search.py --selection lodo produces them)"
        )
    score, group, epoch, rec = min(candidates, key=lambda c: (c[0], c[2], c[1]))
    return Selection("lodo", rec.get("trial", group), epoch, score, rec)


def select(runs: Mapping[str, Run], method: str = "source_val") -> Selection:
    """Dispatch by method name."""
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
    return {"source_val": select_source_val, "lodo": select_lodo, "oracle": select_oracle}[method](runs)


def select_run(run: Run, method: str, lodo: Mapping[str, Mapping[int, float]] | None = None) -> Selection | None:
    """The epoch ``method`` selects within one full run (the leaderboard's per-trial choice).

    Under ``lodo`` (``lodo`` = :func:`lodo_scores` of all runs) a run whose configuration lacks a
    complete set of holdout runs has no selected epoch: None.
    """
    if method == "source_val":
        return select_epoch_source_val(run)
    if method == "oracle":
        return select_epoch_oracle(run)
    if method != "lodo":
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
    name = run[0].get("trial", "")
    per_epoch = (lodo or {}).get(run[0].get("group") or name, {})
    by_epoch = {int(r["epoch"]): r for r in run}
    cands = [(score, epoch) for epoch, score in per_epoch.items() if epoch in by_epoch]
    if not cands:
        return None
    score, epoch = min(cands)
    return Selection("lodo", name, epoch, float(score), by_epoch[epoch])


def compared(runs: Mapping[str, Run], method: str) -> dict[str, int]:
    """How many trials / configurations / epochs a selection by ``method`` compared."""
    full = _full_runs(runs)
    if method == "lodo":
        scores = lodo_scores(runs)
        return {
            "configurations_compared": len(scores),
            "epochs_compared": sum(len(v) for v in scores.values()),
            "holdout_runs": sum(1 for r in runs.values() if r and r[0].get("holdout")),
            "full_runs": len(full),
        }
    return {"trials_compared": len(full), "epochs_compared": sum(len(r) for r in full.values())}


SCORE_MEANING = {
    "source_val": "source-validation {metric} objective (lower is better)",
    "lodo": "mean held-out-source-domain {metric} objective (lower is better)",
    "oracle": "target-test AUC, negated (lower is better)",
}


def describe(sel: Selection, counts: Mapping[str, int], threshold: float) -> str:
    """One sentence on how ``sel`` was chosen (``counts``: :func:`compared`)."""
    rec = sel.record
    metric = "HTER at its EER" if rec["config"].get("selection_metric", "hter") == "hter" else "1 - AUC"
    thr = f" The decision threshold {threshold:.4f} is that epoch's EER threshold on its source validation videos."
    if sel.method == "source_val":
        return (
            f"Selected by source validation: among {counts['trials_compared']} trial(s) trained on all sources "
            f"({counts['epochs_compared']} epoch records), trial {sel.trial} at epoch {sel.epoch} has the lowest "
            f"video-level {metric} ({sel.score:.4f}) on the held-out subjects (dev split) of the source domains "
            f"{', '.join(rec['sources'])}; no target data was used." + thr
        )
    if sel.method == "lodo":
        return (
            f"Selected by leave-one-source-domain-out validation: among {counts['configurations_compared']} "
            f"configuration(s) with a holdout run for every source ({counts['epochs_compared']} epochs), the "
            f"configuration of trial {sel.trial} at epoch {sel.epoch} has the lowest mean held-out-domain "
            f"{metric} ({sel.score:.4f}); the weights are that configuration's run on all sources at that epoch; "
            "no target data was used." + thr
        )
    return (
        f"ORACLE selection (an upper bound, NOT a result): among {counts['trials_compared']} trial(s) "
        f"({counts['epochs_compared']} epoch records), trial {sel.trial} at epoch {sel.epoch} has the best "
        f"TARGET-TEST AUC ({-sel.score:.4f}), as the reference code selects; it looked at the target test data, "
        "so every target number of this model is optimistic." + thr
    )


def oracle_column(run: Run) -> dict[str, Any]:
    """The oracle upper bound of one run, labelled as such."""
    o = select_epoch_oracle(run)
    t = o.record["target_metrics"]
    return {
        "note": "UPPER BOUND: this trial's epoch with the best target-test AUC (selection on test data)",
        "epoch": o.epoch,
        "target_hter@target_eer": t["hter_eer"],
        "target_hter@source_val_threshold": t["hter"],
        "target_auc": t["auc"],
    }
