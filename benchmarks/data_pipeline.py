"""Training-input throughput: the Ray Data pipeline vs a reference-style LMDB + DataLoader one.

Both deliver the same thing - meta-learning batches of D x (B live + B spoof) 6-channel crops
with depth targets - from the same images, with the same per-image work
(``anrl_ray.data.transforms.FASTransform``: decode, HueSaturationValue, flip, resize,
normalize, RGB+HSV, depth) and the same number of CPU worker processes:

* ray:       ``training_dataset`` (Parquet -> select -> shuffle -> decode) + ``meta_batches``,
             Ray started with ``--workers`` CPUs.
* reference: the images and depth maps in an LMDB keyed by path, a ``Dataset`` whose item ``i``
             is sample ``i mod n`` of every (domain, class) list (the reference ``DG_Dataset``),
             a shuffling ``DataLoader(num_workers=--workers)``.

Images/s counts delivered training images over ``--epochs`` epochs of ``steps_per_epoch``
steps (the first epoch, with its start-up, is also reported on its own); one-time set-up
(LMDB build; Ray Data's read and cache of the encoded split) is reported apart. Prints a
readable line and one JSON line.

    .venv/bin/python benchmarks/data_pipeline.py                       # generates a dataset
    .venv/bin/python benchmarks/data_pipeline.py --data DIR --img-size 256 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anrl_ray.data import synthetic
from anrl_ray.data.format import iter_rows
from anrl_ray.data.pipeline import InputSpec, meta_batches, steps_per_epoch, training_dataset
from anrl_ray.data.transforms import FASTransform  # noqa: E402


# --------------------------------------------------------------------------- reference style


def build_lmdb(data_root: Path, domains: list[str], path: Path) -> dict[tuple[int, int], list[str]]:
    """Write every training image (and live depth map) into an LMDB; return per-(domain, class) key lists."""
    import lmdb

    lists: dict[tuple[int, int], list[str]] = {(d, y): [] for d in range(len(domains)) for y in (0, 1)}
    env = lmdb.open(str(path), map_size=1 << 34)
    with env.begin(write=True) as txn:
        for di, d in enumerate(domains):
            for r in iter_rows(data_root / d, columns=["image", "depth", "label", "video_id", "frame_index", "split"]):
                if r["split"] != "train":
                    continue
                key = f"{d}/{r['video_id']}/{r['frame_index']}"
                txn.put(key.encode(), r["image"])
                if r["depth"] is not None:
                    txn.put(f"{key}/depth".encode(), r["depth"])
                lists[(di, int(r["label"]))].append(key)
    env.close()
    return lists


class LMDBMetaDataset(torch.utils.data.Dataset):
    """Item i: sample (i mod n_g) of every (domain, class) group g, as the reference DG_Dataset."""

    def __init__(self, path: str, lists: dict[tuple[int, int], list[str]], spec: InputSpec, length: int):
        self.path, self.lists, self.spec, self.length = path, lists, spec, length
        self.env = None
        self.tf = None
        self.order = sorted(lists)  # (domain, label): domain by domain, live then spoof

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        import lmdb

        if self.env is None:  # opened lazily in each worker process (LMDB handles do not survive fork)
            self.env = lmdb.open(self.path, readonly=True, lock=False, readahead=False)
            self.tf = FASTransform(self.spec.img_size, self.spec.in_channels, augment=True,
                                   seed=int.from_bytes(os.urandom(4), "little"))
        xs, ds = [], []
        with self.env.begin() as txn:
            for g in self.order:
                key = self.lists[g][i % len(self.lists[g])]
                x, d = self.tf(txn.get(key.encode()), txn.get(f"{key}/depth".encode()), g[1])
                xs.append(x)
                ds.append(d)
        return np.stack(xs), np.stack(ds)  # (G, C, H, W), (G, 1, s, s)


def reference_epochs(loader, *, num_domains: int, B: int, steps: int, epochs: int) -> list[tuple[int, float]]:
    out = []
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for step, (x, d) in enumerate(loader):
            if step == steps:
                break
            # (B, G, ...) -> domain by domain, B live then B spoof: (D*2B, ...)
            x = x.view(B, num_domains, 2, *x.shape[2:]).permute(1, 2, 0, 3, 4, 5).reshape(-1, *x.shape[2:])
            n += x.shape[0]
        out.append((n, time.perf_counter() - t0))
    return out


# --------------------------------------------------------------------------- Ray Data


def ray_epochs(data_root: Path, domains: list[str], spec: InputSpec, *, B: int, steps: int, epochs: int, workers: int):
    import ray

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        it = training_dataset(data_root, domains, spec=spec, seed=0).iterator()
        out = [(0, time.perf_counter() - t0)]  # setup: reading (and caching) the encoded split
        for epoch in range(epochs):
            t0, n = time.perf_counter(), 0
            for batch in meta_batches(it, num_domains=len(domains), batch_per_class=B, steps=steps, seed=0, epoch=epoch):
                n += batch["image"].shape[0]
            out.append((n, time.perf_counter() - t0))
        return out
    finally:
        ray.shutdown()


def _report(result: dict, name: str, runs: list[tuple[int, float]]) -> None:
    """runs[0] is the set-up (0 images), then one entry per epoch."""
    result[f"{name}_setup_seconds"] = round(runs[0][1], 2)
    result[f"{name}_images_per_s"] = round(_rate(runs[1:]), 1)
    result[f"{name}_first_epoch_images_per_s"] = round(_rate(runs[1:2]), 1)
    result[f"{name}_later_epochs_images_per_s"] = round(_rate(runs[2:]), 1) if len(runs) > 2 else None


def _rate(runs: list[tuple[int, float]]) -> float:
    return sum(n for n, _ in runs) / max(sum(t for _, t in runs), 1e-9)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data root (default: generate the default synthetic benchmark in a temp dir)")
    p.add_argument("--domains", default="O,C,I")
    p.add_argument("--img-size", type=int, default=256, help="network input size (stored crops are resized to it)")
    p.add_argument("--workers", type=int, default=1, help="CPU worker processes of each pipeline")
    p.add_argument("--batch-per-class", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--only", choices=["ray", "reference"], default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    torch.set_num_threads(1)

    tmp = tempfile.TemporaryDirectory(prefix="anrl-data-bench-")
    root = Path(args.data) if args.data else Path(tmp.name) / "data"
    if not args.data:
        synthetic.generate(root)
    domains = args.domains.split(",")
    spec = InputSpec(img_size=args.img_size)
    B = args.batch_per_class
    steps = steps_per_epoch(root, domains, batch_per_class=B, world_size=1)
    result = {"benchmark": "data_pipeline", "img_size": args.img_size, "workers": args.workers, "domains": domains,
              "batch_per_class": B, "steps_per_epoch": steps, "epochs": args.epochs,
              "images_per_step": 2 * len(domains) * B}

    if args.only in (None, "reference"):
        t0 = time.perf_counter()
        lists = build_lmdb(root, domains, Path(tmp.name) / "lmdb")
        setup = time.perf_counter() - t0
        length = max(len(v) for v in lists.values())
        ds = LMDBMetaDataset(str(Path(tmp.name) / "lmdb"), lists, spec, length)
        loader = torch.utils.data.DataLoader(ds, batch_size=B, shuffle=True, num_workers=args.workers, drop_last=True)
        runs = reference_epochs(loader, num_domains=len(domains), B=B, steps=steps, epochs=args.epochs)
        _report(result, "reference", [(0, setup), *runs])
    if args.only in (None, "ray"):
        _report(result, "ray", ray_epochs(root, domains, spec, B=B, steps=steps, epochs=args.epochs, workers=args.workers))
    if "ray_images_per_s" in result and "reference_images_per_s" in result:
        result["ratio_ray_over_reference"] = round(result["ray_images_per_s"] / result["reference_images_per_s"], 3)
        later = result["ray_later_epochs_images_per_s"], result["reference_later_epochs_images_per_s"]
        result["ratio_later_epochs"] = round(later[0] / later[1], 3) if all(later) else None
        print(f"{args.img_size}px, {args.workers} worker(s), {args.epochs} epochs x {steps} steps: "
              f"Ray Data {result['ray_images_per_s']} img/s vs reference LMDB+DataLoader "
              f"{result['reference_images_per_s']} img/s (ratio {result['ratio_ray_over_reference']}; "
              f"after the first epoch: {later[0]} vs {later[1]}, ratio {result['ratio_later_epochs']})")
    print(json.dumps(result))
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
