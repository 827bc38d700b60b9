"""Ray Train overhead: the same trial (same data, same steps) through Ray Train and in a plain process.

    python benchmarks/train_overhead.py [--data DIR] [--epochs 2] [--workers 1 2]

Prints one JSON line per variant (wall seconds, seconds per epoch from the records) and a
summary line with the overhead of each Ray Train variant over the plain process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import dataset, emit, quiet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--protocol", default="OCI_M")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value")
    args = p.parse_args()
    quiet()
    import ray

    from anrl_ray.config import load_config
    from anrl_ray.records import read_records
    from anrl_ray.experiment import RECORDS_FILE
    from anrl_ray.runtime import init_ray
    from anrl_ray.trial import run_local, run_trial

    data = dataset(args.data)
    base = {"protocol": args.protocol, "data_root": data, "epochs": args.epochs, **dict(s.split("=", 1) for s in args.set)}
    init_ray(None)
    out = Path(tempfile.mkdtemp(prefix="anrl-overhead-"))
    results = {}

    cfg = load_config(None, {**base, "num_workers": 1}, profile="cpu")
    t0 = time.time()
    run_local(cfg, out / "local", threads=1)
    wall = time.time() - t0
    recs = read_records(out / "local" / RECORDS_FILE)
    results["plain_process"] = wall
    emit({"variant": "plain_process", "wall_s": round(wall, 2), "epoch_s": [r["epoch_seconds"] for r in recs],
          "steps_per_epoch": recs[0]["steps_per_epoch"]})

    for n in args.workers:
        cfg = load_config(None, {**base, "num_workers": n}, profile="cpu")
        t0 = time.time()
        result = run_trial(cfg, storage_path=str(out), name=f"train{n}")
        wall = time.time() - t0
        if result.error:
            raise SystemExit(f"Ray Train run failed: {result.error}")
        recs = read_records(out / f"train{n}" / RECORDS_FILE)
        results[f"ray_train_{n}w"] = wall
        emit({"variant": f"ray_train_{n}_workers", "wall_s": round(wall, 2), "epoch_s": [r["epoch_seconds"] for r in recs],
              "steps_per_epoch": recs[0]["steps_per_epoch"]})
    base_wall = results["plain_process"]
    emit({"summary": {k: {"wall_s": round(v, 2), "overhead_s": round(v - base_wall, 2), "ratio": round(v / base_wall, 2)}
                      for k, v in results.items()}})
    ray.shutdown()


if __name__ == "__main__":
    main()
