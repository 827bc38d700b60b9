"""The protocol table: searches per protocol, multi-seed re-evaluation, searched vs defaults.

``anrl-ray table`` keeps one folder ``STORAGE/NAME/`` with one experiment per protocol
(``STORAGE/NAME/OCI_M/`` ...) and writes ``table.md`` / ``table.csv`` / ``table.tex`` beside them.
Per protocol, the source-val-best configuration of the search (and, with ``--selection lodo``,
the lodo-best) and the reference defaults (the search space's defaults) are re-trained with the
same fresh seeds (``anrl_ray.reeval``), so the difference searched - defaults is paired: its
SEM is the SEM of the per-seed differences. The oracle (each re-run's best-target-AUC epoch) is
an upper bound in its own columns; ANRL's published numbers (selected on the target test set)
stand in a column marked as such. Every number is a function of the runs' records.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from anrl_ray.config import TrialConfig, default_profile, make_config
from anrl_ray.errors import UserError
from anrl_ray.experiment import Experiment
from anrl_ray.protocols import PROTOCOLS, get_protocol
from anrl_ray.records import collect_records
from anrl_ray.reeval import ReevalError, TrainOne, fresh_seeds, mean_sem, metric_values, seed_selections, train_run
from anrl_ray.report import experiment_info, leaderboard
from anrl_ray.space import load_space

DEFAULT_PROTOCOLS = ("OCI_M", "OMI_C", "OCM_I", "ICM_O")
# ANRL (Liu et al., ACM MM 2021), HTER / AUC as fractions; selected on the target test set.
PUBLISHED = {"OCI_M": (0.1083, 0.9675), "OMI_C": (0.1785, 0.8926), "OCM_I": (0.1603, 0.9104), "ICM_O": (0.1567, 0.9190)}
PAPER_LABEL = "ANRL paper (target-selected)"
METRICS = {  # Selection.summary() key -> short name in the CSV / label in the tables
    "target_hter@source_val_threshold": ("hter_srcval", "HTER @src-val thr"),
    "target_hter@target_eer": ("hter_eer", "HTER @tgt EER"),
    "target_auc": ("auc", "AUC"),
}
SYNTHETIC_NOTE = "SYNTHETIC data: not comparable with the ANRL paper"


@dataclass
class ProtocolResult:
    """Per-seed target metrics of one protocol: ``values[method][arm][metric]`` (arm: searched / defaults)."""

    protocol: str
    seeds: list[int]
    trials: dict[str, str] = field(default_factory=dict)  # method -> the searched trial
    same: dict[str, bool] = field(default_factory=dict)  # method -> searched config == defaults
    values: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    oracle: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # arm -> metric -> per seed
    synthetic: bool | None = None
    error: str = ""


# --------------------------------------------------------------------------- searches


def search_argv(args: argparse.Namespace, protocol: str, root: Path, resume: bool) -> list[str]:
    """The ``run_search.py`` arguments of one protocol's search inside the table folder."""
    argv = ["--protocol", protocol, "--storage", str(root), "--name", protocol, "--selection", args.selection,
            "--profile", args.profile, "--workers-per-trial", str(args.workers_per_trial),
            "--cpus-per-worker", str(args.cpus_per_worker), "--gpus-per-worker", str(args.gpus_per_worker),
            "--seed", str(args.seed), "--wandb", args.wandb, "--max-concurrent", str(args.max_concurrent),
            "--scheduler", args.scheduler]
    for flag, value in (("--data", args.data), ("--num-samples", args.num_samples), ("--epochs", args.epochs),
                        ("--address", args.address)):
        if value:
            argv += [flag, str(value)]
    for kv in args.set:
        argv += ["--set", kv]
    return argv + (["--resume"] if resume else [])


def ensure_search(args: argparse.Namespace, protocol: str, root: Path) -> Experiment:
    """Run one protocol's search, continue it (``--resume``), or reuse it when all its trials are done."""
    from anrl_ray.cli.run import search_parser
    from anrl_ray.search import DEFAULT_TRIALS, check_args, run_search
    from anrl_ray.study import finished_trials

    exp = Experiment(root / protocol)
    started = exp.search_json.is_file()
    profile = default_profile() if args.profile == "auto" else args.profile
    wanted = args.num_samples or DEFAULT_TRIALS[profile]
    if started and exp.leaderboard_csv.is_file() and finished_trials(exp) >= wanted:
        print(f"table: {protocol}: search {exp.path} has its {wanted} trials; reused", flush=True)
        return exp
    sargs = search_parser().parse_args(search_argv(args, protocol, root, resume=started))
    check_args(sargs)
    run_search(sargs)
    done = finished_trials(exp)
    if done < wanted:  # Tune stopped early (Ctrl-C): stop here rather than go on to the next protocol
        raise UserError(f"the search {exp.path} stopped after {done} of {wanted} trials; run the same command again "
                        "to continue it")
    return exp


# --------------------------------------------------------------------------- re-evaluation


def best_trial(runs: Mapping[str, Any], method: str) -> str:
    """The trial ``method`` ranks first among the experiment's runs."""
    rows = [r for r in leaderboard(runs, method) if r["selection_score"] is not None]
    if not rows:
        raise UserError(f"no trial can be selected by {method} (no finished trial, or no complete holdout set)")
    return rows[0]["trial"]


def defaults_config(exp: Experiment) -> TrialConfig:
    """The reference defaults of an experiment: its base config with every space parameter at its default."""
    settings = exp.settings()
    if not settings.get("space") or not settings.get("base_config"):
        raise UserError(f"{exp.search_json}: 'space' or 'base_config' missing; re-run the search of {exp.path}")
    return make_config({**settings["base_config"], **load_space(settings["space"]).defaults()})


def same_config(a: TrialConfig, b: TrialConfig) -> bool:
    """Equal configurations up to the seed (the searched trial may be the defaults trial itself)."""
    return a.replace(seed=0).to_dict() == b.replace(seed=0).to_dict()


def evaluate_protocol(exp: Experiment, seeds: int, methods: Sequence[str], train_one: TrainOne = train_run) -> ProtocolResult:
    """Re-train the searched configuration(s) and the defaults of one experiment with the same fresh seeds."""
    runs = collect_records(exp.trials)
    info = experiment_info(exp)
    protocol = info.get("protocol") or exp.name
    res = ProtocolResult(protocol, fresh_seeds(seeds), synthetic=info.get("synthetic"))
    defaults = defaults_config(exp)
    arms: dict[str, tuple[str, TrialConfig]] = {}  # arm -> (run-name stem, config)
    for method in methods:
        trial = best_trial(runs, method)
        cfg = make_config(runs[trial][0]["config"])
        res.trials[method], res.same[method] = trial, same_config(cfg, defaults)
        arms[f"searched:{method}"] = (f"reeval-{trial}", cfg)
    # the defaults trial's own runs when it is the searched one: identical configurations train once
    stem = next((s for s, c in arms.values() if same_config(c, defaults)), "reeval-defaults")
    arms["defaults"] = (stem, defaults)
    per_seed: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for seed in res.seeds:
        for arm, (stem, cfg) in arms.items():
            per_seed[arm].append(seed_selections(cfg, seed, exp.reeval, f"{stem}-seed{seed}", methods, train_one))
    for method in methods:
        res.values[method] = {arm: metric_values([s[method] for s in per_seed[key]])
                              for arm, key in (("searched", f"searched:{method}"), ("defaults", "defaults"))}
    res.oracle = {"searched": metric_values([s["oracle"] for s in per_seed[f"searched:{methods[0]}"]]),
                  "defaults": metric_values([s["oracle"] for s in per_seed["defaults"]])}
    return res


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """Mean and SEM of the per-seed differences a - b, and whether |mean| > 2 SEM ("yes"/"no"/"n/a")."""
    diffs = [x - y for x, y in zip(a, b)]
    mean, sem = mean_sem(diffs)
    if all(d == 0 for d in diffs):
        return mean, 0.0, "no"
    if not math.isfinite(sem):
        return mean, sem, "n/a"
    return mean, sem, "yes" if abs(mean) > 2 * sem else "no"


# --------------------------------------------------------------------------- rows and files


def csv_rows(results: Sequence[ProtocolResult], methods: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (protocol, selection method): means, SEMs, paired differences, oracle, paper (fractions)."""
    rows = []
    for r in results:
        paper = PUBLISHED.get(r.protocol, (None, None))
        for method in methods:
            row: dict[str, Any] = {"protocol": r.protocol, "selection": method, "seeds": len(r.seeds),
                                   "data": SYNTHETIC_NOTE if r.synthetic else "real", "error": r.error,
                                   "searched_trial": r.trials.get(method, ""),
                                   "searched_is_defaults": {True: "yes", False: "no"}.get(r.same.get(method), "")}
            vals = r.values.get(method, {})
            for key, (short, _) in METRICS.items():
                for arm in ("searched", "defaults"):
                    xs = vals.get(arm, {}).get(key)
                    row[f"{arm}_{short}_mean"], row[f"{arm}_{short}_sem"] = mean_sem(xs) if xs else (None, None)
                if vals:
                    m, s, sig = paired_difference(vals["searched"][key], vals["defaults"][key])
                else:
                    m, s, sig = None, None, ""
                row[f"diff_{short}_mean"], row[f"diff_{short}_sem"], row[f"diff_{short}_gt_2se"] = m, s, sig
            for arm in ("searched", "defaults"):
                for key in ("target_hter@target_eer", "target_auc"):
                    xs = r.oracle.get(arm, {}).get(key)
                    short = METRICS[key][0]
                    row[f"oracle_{arm}_{short}_mean"], row[f"oracle_{arm}_{short}_sem"] = mean_sem(xs) if xs else (None, None)
            row["paper_hter"], row["paper_auc"] = paper
            rows.append(row)
    return rows


def _pm(row: Mapping[str, Any], prefix: str) -> str:
    m, s = row.get(prefix + "_mean"), row.get(prefix + "_sem")
    if m is None or not math.isfinite(m):
        return "–"
    return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None and math.isfinite(s) else f"{100 * m:.2f}"


def _paper(row: Mapping[str, Any]) -> str:
    return "–" if row["paper_hter"] is None else f"{100 * row['paper_hter']:.2f} / {100 * row['paper_auc']:.2f}"


def tables(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], synthetic: bool, seeds: int) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, cells) of every table in table.md / table.tex."""
    tag = f" [{SYNTHETIC_NOTE}]" if synthetic else ""
    out = []
    for method in methods:
        sel = [r for r in rows if r["selection"] == method]
        arm = [f"{a} {label}" for a in ("searched", "defaults") for _, label in METRICS.values()]
        out.append((f"Target metrics, epochs selected by {method}, mean ± SEM over {seeds} seeds (%){tag}",
                    ["protocol", "searched trial", *arm, f"{PAPER_LABEL} HTER / AUC"],
                    [[r["protocol"], r["searched_trial"] + (" (= defaults)" if r["searched_is_defaults"] == "yes" else ""),
                      *[_pm(r, f"{a}_{short}") for a in ("searched", "defaults") for short, _ in METRICS.values()],
                      _paper(r)] for r in sel]))
        out.append((f"Searched - defaults, paired over {seeds} seeds, epochs selected by {method} (% points){tag}",
                    ["protocol", *[h for _, label in METRICS.values() for h in (f"Δ {label}", "> 2 SE")]],
                    [[r["protocol"], *[c for short, _ in METRICS.values()
                                       for c in (_pm(r, f"diff_{short}"), r[f"diff_{short}_gt_2se"] or "–")]]
                     for r in sel]))
    first = [r for r in rows if r["selection"] == methods[0]]
    out.append((f"ORACLE epoch (best target-test AUC of each re-run): an UPPER BOUND, not a result (%){tag}",
                ["protocol", "searched oracle HTER @tgt EER", "searched oracle AUC", "defaults oracle HTER @tgt EER",
                 "defaults oracle AUC", f"{PAPER_LABEL} HTER / AUC"],
                [[r["protocol"], _pm(r, "oracle_searched_hter_eer"), _pm(r, "oracle_searched_auc"),
                  _pm(r, "oracle_defaults_hter_eer"), _pm(r, "oracle_defaults_auc"), _paper(r)] for r in first]))
    return out


NOTES = [
    "HTER @src-val thr: at the threshold chosen on source validation (what a deployment sees); HTER @tgt EER: at the "
    "target's own EER threshold (the literature's number). SEM: sample standard deviation (ddof=1) / sqrt(seeds).",
    "Searched and defaults are re-trained with the same fresh seeds; the difference's SEM is that of the per-seed "
    "differences. '> 2 SE': |mean difference| > 2 SEM.",
    f"{PAPER_LABEL}: ANRL's published numbers, whose checkpoints were selected on the target test set (like the "
    "oracle columns): not a like-for-like comparison with source-selected numbers.",
]


def write_tables(root: Path, results: Sequence[ProtocolResult], methods: Sequence[str], seeds: int, command: str = "") -> dict[str, Path]:
    """Write ``table.md``, ``table.csv`` and ``table.tex`` into ``root``; returns their paths."""
    rows = csv_rows(results, methods)
    synthetic = any(r.synthetic for r in results)
    parts = tables(rows, methods, synthetic, seeds)
    md = ["# ANRL protocol table" + (f" [{SYNTHETIC_NOTE}]" if synthetic else ""), ""]
    if synthetic:
        md += ["> **SYNTHETIC data.** These numbers come from the generated synthetic benchmark, not from OULU-NPU / "
               "CASIA-FASD / Replay-Attack / MSU-MFSD; they are NOT comparable with the paper's column.", ""]
    if command:
        md += [f"Command: `{command}`", ""]
    for title, headers, cells in parts:
        md += [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        md += ["| " + " | ".join(c) + " |" for c in cells] + [""]
    errors = [f"- {r.protocol}: {r.error}" for r in results if r.error]
    md += (["## Protocols without results", "", *errors, ""] if errors else []) + [f"- {n}" for n in NOTES] + [""]
    paths = {s: root / f"table.{s}" for s in ("md", "csv", "tex")}
    paths["md"].write_text("\n".join(md))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["protocol"])
        w.writeheader()
        w.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    paths["tex"].write_text(latex(parts))
    return paths


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("Δ", r"$\Delta$"), (">", r"$>$"), ("–", "--")):
        s = s.replace(a, b)
    return s


def latex(parts: Sequence[tuple[str, list[str], list[list[str]]]]) -> str:
    """The tables as LaTeX ``table`` environments (booktabs rules), captions = the Markdown titles."""
    out = ["% written by anrl-ray table; needs \\usepackage{booktabs}"]
    for title, headers, cells in parts:
        out += [r"\begin{table}[t]", r"\centering", r"\scriptsize", f"\\caption{{{_tex(title)}}}",
                r"\begin{tabular}{" + "l" * len(headers) + "}", r"\toprule", " & ".join(_tex(h) for h in headers) + r" \\",
                r"\midrule", *[" & ".join(_tex(c) for c in row) + r" \\" for row in cells], r"\bottomrule",
                r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- the command


def check_table_args(args: argparse.Namespace) -> list[str]:
    """The protocols of ``--protocols``, validated with every other option (UserError naming the option)."""
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols:
        raise UserError("--protocols is empty: give e.g. OCI_M,OMI_C,OCM_I,ICM_O")
    for p in protocols:
        get_protocol(p)
        if args.selection == "lodo" and len(PROTOCOLS[p].sources) < 3:
            raise UserError(f"--selection lodo needs >= 3 source domains; {p} has 2 (drop it from --protocols)")
    if len(set(protocols)) != len(protocols):
        raise UserError(f"--protocols {args.protocols}: a protocol is listed twice")
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    return protocols


def run_table(args: argparse.Namespace, train_one: TrainOne = train_run) -> dict[str, Path]:
    """Run (or collect) every protocol's search, re-evaluate searched and defaults, write table.*."""
    from anrl_ray.runtime import init_ray

    protocols = check_table_args(args)
    methods = ["source_val"] + (["lodo"] if args.selection == "lodo" else [])
    root = Experiment(Path(args.storage).resolve() / args.name)
    t0 = time.time()
    with root.driver_lock():
        exps = [ensure_search(args, p, root.path) for p in protocols]
        init_ray(args.address)
        results = []
        for p, exp in zip(protocols, exps):
            print(f"table: {p}: re-evaluating searched and defaults over {args.seeds} seeds", flush=True)
            try:
                results.append(evaluate_protocol(exp, args.seeds, methods, train_one))
            except (ReevalError, UserError) as e:  # a failed re-run, no selectable trial: said in the table
                results.append(ProtocolResult(p, fresh_seeds(args.seeds), error=str(e)[:500],
                                              synthetic=experiment_info(exp).get("synthetic")))
        paths = write_tables(root.path, results, methods, args.seeds, getattr(args, "command_line", ""))
    print(paths["md"].read_text())
    print(f"table: written {', '.join(str(p) for p in paths.values())} in {time.time() - t0:.0f} s", flush=True)
    return paths
