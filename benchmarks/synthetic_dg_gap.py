"""Is the synthetic benchmark a domain-generalization problem? In-domain vs cross-domain ERM.

For every target domain X, a plain BatchNorm ANRL network (``build_model(norm="batch")``) is
trained with cross-entropy only (ERM, balanced batches: B live + B spoof per training domain):

  (a) in-domain:    train on X's train subjects,                  test on X's test subjects;
  (b) cross-domain: train on the other domains' train subjects,   test on X's test subjects.

A DG benchmark needs (a) easy and (b) clearly worse but well above chance. Prints a markdown
table and one JSON line (frame-level AUC, HTER at the test EER threshold, and HTER at the
threshold of the training domains' dev split - the realistic one).

    .venv/bin/python benchmarks/synthetic_dg_gap.py                 # generates the default benchmark
    .venv/bin/python benchmarks/synthetic_dg_gap.py --data DIR --steps 300 --img-size 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anrl_ray.data import synthetic  # noqa: E402
from anrl_ray.data.format import iter_rows  # noqa: E402
from anrl_ray.data.transforms import FASTransform  # noqa: E402
from anrl_ray.model import build_model  # noqa: E402

try:
    from anrl_ray.metrics import evaluate_scores
except ImportError:  # pragma: no cover - the metrics module is written concurrently
    from sklearn.metrics import roc_auc_score, roc_curve

    def evaluate_scores(scores, labels, threshold=None):
        fpr, tpr, thr = roc_curve(labels, scores)
        i = int(np.nanargmin(np.abs(fpr - (1 - tpr))))
        out = {"auc": float(roc_auc_score(labels, scores)), "eer_threshold": float(thr[i]),
               "hter_eer": float((fpr[i] + 1 - tpr[i]) / 2)}
        if threshold is not None:
            s, y = np.asarray(scores), np.asarray(labels)
            out["hter"] = float((np.mean(s[y == 0] >= threshold) + np.mean(s[y == 1] < threshold)) / 2)
        return out


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
    model.eval()
    return torch.cat([torch.softmax(model(x[i : i + 256]).logits, 1)[:, 1] for i in range(0, len(x), 256)]).cpu().numpy()


def evaluate(model: torch.nn.Module, test: dict, dev_sets: list[dict]) -> dict[str, float]:
    dev_s = np.concatenate([scores(model, d["x"]) for d in dev_sets])
    dev_y = np.concatenate([d["y"].cpu().numpy() for d in dev_sets])
    thr = evaluate_scores(dev_s, dev_y)["eer_threshold"]
    m = evaluate_scores(scores(model, test["x"]), test["y"].cpu().numpy(), threshold=thr)
    return {"auc": round(m["auc"], 4), "hter_eer": round(m["hter_eer"], 4), "hter_dev_thr": round(m["hter"], 4)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data root with O, C, I, M (default: generate the default benchmark in a temp dir)")
    p.add_argument("--targets", default="O,C,I,M")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8, help="per training domain and class")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, default=1, help="training seeds to average")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gen", default="", help="generator overrides for the temp benchmark, e.g. subjects=30,frames_per_video=6")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    tmp = None
    root = Path(args.data) if args.data else None
    gen_seconds = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="anrl-dg-gap-")
        root = Path(tmp.name)
        kw = {k: int(v) for k, v in (kv.split("=") for kv in args.gen.split(",") if kv)}
        summary = synthetic.generate(root, **kw)
        gen_seconds = summary["seconds"]
        print(f"generated {summary['rows']} rows in {summary['seconds']} s ({summary['frames_per_second']} frames/s)", flush=True)
    domains = synthetic.DOMAINS
    data = {d: load_domain(root, d, args.img_size) for d in domains}
    dev = args.device
    for d in data.values():
        for s in d.values():
            s["x"], s["y"] = s["x"].to(dev), s["y"].to(dev)

    results = []
    for target in args.targets.split(","):
        others = [d for d in domains if d != target]
        row: dict = {"target": target}
        for setting, sources in (("in", [target]), ("cross", others)):
            runs = []
            t0 = time.time()
            for seed in range(args.seeds):
                model = train_erm([data[s]["train"] for s in sources], args, seed)
                runs.append(evaluate(model, data[target]["test"], [data[s]["dev"] for s in sources]))
            row[setting] = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
            row[setting]["seconds"] = round(time.time() - t0, 1)
            print(f"{target} {setting:5s} {row[setting]}", flush=True)
        results.append(row)

    print("\n| target | in-domain AUC | in-domain HTER | cross-domain AUC | cross-domain HTER | cross HTER @ source-dev thr |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['target']} | {r['in']['auc']:.3f} | {r['in']['hter_eer']:.3f} | {r['cross']['auc']:.3f} "
              f"| {r['cross']['hter_eer']:.3f} | {r['cross']['hter_dev_thr']:.3f} |")
    mean = {s: {k: round(float(np.mean([r[s][k] for r in results])), 4) for k in ("auc", "hter_eer", "hter_dev_thr")}
            for s in ("in", "cross")}
    print(f"| mean | {mean['in']['auc']:.3f} | {mean['in']['hter_eer']:.3f} | {mean['cross']['auc']:.3f} "
          f"| {mean['cross']['hter_eer']:.3f} | {mean['cross']['hter_dev_thr']:.3f} |")
    out = {"benchmark": "synthetic_dg_gap", "args": vars(args), "generation_seconds": gen_seconds,
           "results": results, "mean": mean}
    print(json.dumps(out))
    if tmp is not None:
        tmp.cleanup()
    return out


if __name__ == "__main__":
    main()
