"""Is the synthetic benchmark a domain-generalization problem? In-domain vs cross-domain ERM.

For every target domain X, a plain BatchNorm ANRL network (``build_model(norm="batch")``) is
trained with cross-entropy only (ERM, balanced batches: B live + B spoof per training domain):

  (a) in-domain:    train on X's train subjects,                  test on X's test subjects;
  (b) cross-domain: train on the other domains' train subjects,   test on X's test subjects.

A DG benchmark needs (a) easy and (b) clearly worse but well above chance. Each seed generates
its own benchmark (generator seed = training seed; ``--data`` fixes the data instead) and trains
every model with that seed. Prints a markdown table (mean ± SEM over seeds of frame-level AUC,
HTER at the test scores' own EER threshold, and HTER at the EER threshold of the training
domains' dev split - the realistic one) and one JSON line with every seed's numbers.

    .venv/bin/python benchmarks/synthetic_dg_gap.py                  # one seed, default benchmark
    nice -n 10 .venv/bin/python benchmarks/synthetic_dg_gap.py --seeds 3
    .venv/bin/python benchmarks/synthetic_dg_gap.py --data DIR --steps 300 --img-size 32

Seeds can run as separate processes and be combined (same table, from their JSON lines):

    for s in 0 1 2; do nice -n 10 .venv/bin/python benchmarks/synthetic_dg_gap.py --first-seed $s > dg$s.log & done; wait
    .venv/bin/python benchmarks/synthetic_dg_gap.py --merge dg0.log dg1.log dg2.log
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


from anrl_ray.data import synthetic  # noqa: E402
from anrl_ray.data.format import iter_rows  # noqa: E402
from anrl_ray.data.transforms import FASTransform  # noqa: E402
from anrl_ray.metrics import evaluate_scores  # noqa: E402
from anrl_ray.model import build_model  # noqa: E402

METRICS = ("auc", "hter_eer", "hter_dev_thr")


def load_domain(root: Path, domain: str, size: int) -> dict[str, dict[str, torch.Tensor]]:
    """All rows of one domain, preprocessed once (no augmentation), per split."""
    tf = FASTransform(size, 6, augment=False)
    rows = list(iter_rows(root / domain, columns=["image", "depth", "label", "split"]))
    out = {}
    for split in ("train", "dev", "test"):
        sel = [r for r in rows if r["split"] == split]
        x, _ = tf.batch([r["image"] for r in sel], [r["depth"] for r in sel], [r["label"] for r in sel])
        out[split] = {"x": torch.from_numpy(x), "y": torch.tensor([r["label"] for r in sel])}
    return out


def train_erm(train_sets: list[dict], args: argparse.Namespace, seed: int) -> torch.nn.Module:
    """Plain-BN ERM: ``args.steps`` Adam steps on balanced batches (B live + B spoof per domain), flips."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_model(norm="batch", width=args.width, in_channels=6).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    groups = [s["x"][s["y"] == c] for s in train_sets for c in (0, 1)]
    model.train()
    for _ in range(args.steps):
        xb = torch.cat([grp[torch.randint(len(grp), (args.batch,), generator=g).to(grp.device)] for grp in groups])
        yb = torch.tensor([c for _ in train_sets for c in (0, 1) for _ in range(args.batch)], device=xb.device)
        flip = (torch.rand(len(xb), generator=g) < 0.5).to(xb.device)
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        loss = F.cross_entropy(model(xb).logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def scores(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Spoof probability per frame."""
    model.eval()
    return torch.cat([torch.softmax(model(x[i : i + 256]).logits, 1)[:, 1] for i in range(0, len(x), 256)]).cpu().numpy()


def evaluate(model: torch.nn.Module, test: dict, dev_sets: list[dict]) -> dict[str, float]:
    """AUC and HTER on ``test``; the operating threshold is the EER threshold of the training domains' dev split."""
    dev_s = np.concatenate([scores(model, d["x"]) for d in dev_sets])
    dev_y = np.concatenate([d["y"].cpu().numpy() for d in dev_sets])
    thr = evaluate_scores(dev_s, dev_y)["eer_threshold"]
    m = evaluate_scores(scores(model, test["x"]), test["y"].cpu().numpy(), threshold=thr)
    return {"auc": round(m["auc"], 4), "hter_eer": round(m["hter_eer"], 4), "hter_dev_thr": round(m["hter"], 4)}


def mean_sem(values: list[float]) -> dict[str, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    v = np.asarray(values, float)
    sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": round(float(v.mean()), 4), "sem": round(sem, 4)}


def run_seed(root: Path, seed: int, targets: list[str], args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    """{target: {"in": metrics, "cross": metrics}} for one seed's data and training seed."""
    data = {d: load_domain(root, d, args.img_size) for d in synthetic.DOMAINS}
    for d in data.values():
        for s in d.values():
            s["x"], s["y"] = s["x"].to(args.device), s["y"].to(args.device)
    out: dict[str, dict[str, dict]] = {}
    for target in targets:
        others = [d for d in synthetic.DOMAINS if d != target]
        out[target] = {}
        for setting, sources in (("in", [target]), ("cross", others)):
            t0 = time.time()
            model = train_erm([data[s]["train"] for s in sources], args, seed)
            m = evaluate(model, data[target]["test"], [data[s]["dev"] for s in sources])
            out[target][setting] = {**m, "seconds": round(time.time() - t0, 1)}
            print(f"seed {seed} {target} {setting:5s} {out[target][setting]}", flush=True)
    return out


def summarize(per_seed: list[dict], targets: list[str]) -> list[dict]:
    """Per target: mean ± SEM over seeds of every metric, in- and cross-domain; prints the markdown table."""
    results = [{"target": t, **{s: {k: mean_sem([r[t][s][k] for r in per_seed]) for k in METRICS} for s in ("in", "cross")}}
               for t in targets]

    def cell(m: dict) -> str:
        return f"{m['mean']:.3f} ± {m['sem']:.3f}"

    print(f"\nmean ± SEM over {len(per_seed)} seed(s)")
    print("| target | in-domain AUC | in-domain HTER | cross-domain AUC | cross-domain HTER | in-domain HTER @ dev thr "
          "| cross HTER @ source-dev thr |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        i, c = r["in"], r["cross"]
        print(f"| {r['target']} | {cell(i['auc'])} | {cell(i['hter_eer'])} | {cell(c['auc'])} | {cell(c['hter_eer'])} "
              f"| {cell(i['hter_dev_thr'])} | {cell(c['hter_dev_thr'])} |")
    return results


def merge(logs: list[str]) -> dict:
    """Combine the JSON lines (last line of each log) of runs over different seeds."""
    runs = [json.loads(Path(f).read_text().strip().splitlines()[-1]) for f in logs]
    per_seed = [r for run in runs for r in run["per_seed"]]
    seeds = [s for run in runs for s in run["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: seeds {seeds} repeat; give runs over different seeds")
    targets = runs[0]["args"]["targets"].split(",")
    results = summarize(per_seed, targets)
    out = {"benchmark": "synthetic_dg_gap", "merged": logs, "seeds": seeds, "results": results, "per_seed": per_seed}
    print(json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data root with O, C, I, M (default: generate the default benchmark per seed in a temp dir)")
    p.add_argument("--targets", default="O,C,I,M")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8, help="per training domain and class")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: each generates its own benchmark and trains with that seed")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gen", default="", help="generator overrides for the temp benchmark, e.g. subjects=30,frames_per_video=6")
    p.add_argument("--merge", nargs="+", metavar="LOG", help="combine the JSON lines of earlier runs (other seeds) and exit")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    torch.set_num_threads(args.threads)
    targets = args.targets.split(",")
    kw = {k: int(v) for k, v in (kv.split("=") for kv in args.gen.split(",") if kv)}

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    per_seed: list[dict] = []
    gen_seconds: list[float] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="anrl-dg-gap-") as tmp:
            root = Path(args.data) if args.data else Path(tmp)
            if not args.data:
                summary = synthetic.generate(root, seed=seed, **kw)
                gen_seconds.append(summary["seconds"])
                print(f"seed {seed}: generated {summary['rows']} rows in {summary['seconds']} s", flush=True)
            per_seed.append(run_seed(root, seed, targets, args))

    results = summarize(per_seed, targets)
    out = {"benchmark": "synthetic_dg_gap", "args": vars(args), "generator_version": synthetic.GENERATOR_VERSION,
           "seeds": seeds, "generation_seconds": gen_seconds, "results": results, "per_seed": per_seed}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
