"""Training-input throughput: the Ray Data pipeline vs a reference-style LMDB + DataLoader one.

Both deliver the same thing - meta-learning batches of D x (B live + B spoof) 6-channel crops
with depth targets - from the same images, with the same per-image work
(``anrl_ray.data.transforms.FASTransform``: decode, HueSaturationValue, flip, resize,
normalize, RGB+HSV, depth) and the same number of CPU worker processes:

* ray:       ``training_dataset`` (Parquet -> select -> cache; per epoch: subsample + shuffle +
             batch decode, uint8 blocks) + ``meta_batches`` (normalises), Ray started with
             ``--workers`` CPUs (in a child process, started once).
* reference: the images and depth maps in an LMDB keyed by path, a ``Dataset`` whose item ``i``
             is sample ``i mod n`` of every (domain, class) list (the reference ``DG_Dataset``,
             one ``FASTransform`` call per sample), a shuffling ``DataLoader(num_workers=--workers)``.

One invocation runs both pipelines ``--repeats`` times, interleaved (ABBA order, so that a
change of machine load hits both alike); each run is ``--epochs`` epochs of
``steps_per_epoch`` steps. Images/s counts delivered training images over a run's epochs (its
first epoch, with the pipeline's start-up, included; "later" = without it). One-time set-up
(LMDB build; Ray start; Ray Data's read and cache of the encoded split, done by the first Ray
run: later runs go on with the same dataset's next epochs) is reported apart.
Prints one line per run, a summary (ratio Ray Data / reference: per-repeat mean and range),
and one JSON line.

    .venv/bin/python benchmarks/data_pipeline.py                       # generates a dataset
    .venv/bin/python benchmarks/data_pipeline.py --data DIR --img-size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anrl_ray.data import synthetic
from anrl_ray.data.format import iter_rows
from anrl_ray.data.pipeline import InputSpec, meta_batches, steps_per_epoch, training_dataset
from anrl_ray.data.transforms import FASTransform

Run = list[tuple[int, float]]  # (images, seconds) per epoch


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


def reference_run(loader, *, num_domains: int, B: int, steps: int, epochs: int) -> Run:
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


# --------------------------------------------------------------------------- Ray Data (child process)


def ray_server(conn, data_root: str, domains: list[str], spec: InputSpec, B: int, steps: int, workers: int) -> None:
    """Start Ray once, then serve runs: each message is a number of epochs; answers ``(setup_s, Run)``.

    The dataset is built (read + cached) by the first run and reused: later runs go on with
    the next epochs (setup 0). An exception is sent back as its traceback text.
    """
    import traceback

    import ray

    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        conn.send(time.perf_counter() - t0)
        it, epoch = None, 0
        while (epochs := conn.recv()) is not None:
            t0 = time.perf_counter()
            if it is None:
                it = training_dataset(data_root, domains, spec=spec, seed=0).iterator()
            setup = time.perf_counter() - t0  # reading (and caching) the encoded split
            run = []
            for _ in range(epochs):
                t0, n = time.perf_counter(), 0
                for batch in meta_batches(it, num_domains=len(domains), batch_per_class=B, steps=steps, seed=0, epoch=epoch):
                    n += batch["image"].shape[0]
                run.append((n, time.perf_counter() - t0))
                epoch += 1
            conn.send((setup, run))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(traceback.format_exc())
    finally:
        ray.shutdown()


def _receive(conn, server) -> object:
    """The server's next answer; RuntimeError if it failed or died."""
    while not conn.poll(5):
        if not server.is_alive():
            raise RuntimeError(f"the Ray Data process exited (code {server.exitcode}) without an answer")
    msg = conn.recv()
    if isinstance(msg, str):
        raise RuntimeError(f"the Ray Data process failed:\n{msg}")
    return msg


# --------------------------------------------------------------------------- report


def _rate(run: Run) -> float:
    return sum(n for n, _ in run) / max(sum(t for _, t in run), 1e-9)


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data root (default: generate the default synthetic benchmark in a temp dir)")
    p.add_argument("--domains", default="O,C,I")
    p.add_argument("--img-size", type=int, default=256, help="network input size (stored crops are resized to it)")
    p.add_argument("--workers", type=int, default=1, help="CPU worker processes of each pipeline")
    p.add_argument("--batch-per-class", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each pipeline, interleaved")
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
              "batch_per_class": B, "steps_per_epoch": steps, "epochs": args.epochs, "repeats": args.repeats,
              "images_per_step": 2 * len(domains) * B, "loadavg_start": [round(x, 1) for x in os.getloadavg()]}
    names = [n for n in ("reference", "ray") if args.only in (None, n)]
    runs: dict[str, list[Run]] = {n: [] for n in names}

    loader = server = conn = None
    if "reference" in names:
        t0 = time.perf_counter()
        lists = build_lmdb(root, domains, Path(tmp.name) / "lmdb")
        result["reference_setup_seconds"] = round(time.perf_counter() - t0, 2)
        ds = LMDBMetaDataset(str(Path(tmp.name) / "lmdb"), lists, spec, max(len(v) for v in lists.values()))
        loader = torch.utils.data.DataLoader(ds, batch_size=B, shuffle=True, num_workers=args.workers, drop_last=True)
    if "ray" in names:  # Ray lives in a child process: the reference's DataLoader forks a Ray-free parent
        conn, child = mp.get_context("spawn").Pipe()
        server = mp.get_context("spawn").Process(
            target=ray_server, args=(child, str(root), domains, spec, B, steps, args.workers), daemon=True)
        server.start()
        result["ray_start_seconds"] = round(_receive(conn, server), 2)
    try:
        for r in range(args.repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                if name == "reference":
                    run = reference_run(loader, num_domains=len(domains), B=B, steps=steps, epochs=args.epochs)
                else:
                    conn.send(args.epochs)
                    setup, run = _receive(conn, server)
                    result.setdefault("ray_setup_seconds", round(setup, 2))
                runs[name].append(run)
                print(f"run {r + 1}/{args.repeats} {name:9s}: {_rate(run):7.1f} img/s "
                      f"(epochs: {', '.join(f'{n / t:.0f}' for n, t in run)})", flush=True)
    finally:
        if server is not None:
            if server.is_alive():
                conn.send(None)
            server.join(timeout=120)
    result["loadavg_end"] = [round(x, 1) for x in os.getloadavg()]
    for name in names:
        result[f"{name}_images_per_s"] = [round(_rate(run), 1) for run in runs[name]]
        if args.epochs > 1:
            result[f"{name}_later_epochs_images_per_s"] = [round(_rate(run[1:]), 1) for run in runs[name]]
    if len(names) == 2:
        ratios = [_rate(a) / _rate(b) for a, b in zip(runs["ray"], runs["reference"])]
        result["ratio_ray_over_reference"] = [round(x, 3) for x in ratios]
        result["ratio_summary"] = _summary(ratios)
        if args.epochs > 1:
            later = [_rate(a[1:]) / _rate(b[1:]) for a, b in zip(runs["ray"], runs["reference"])]
            result["ratio_later_epochs_summary"] = _summary(later)
        s = result["ratio_summary"]
        print(f"{args.img_size}px, {args.workers} worker(s), {args.repeats} x {args.epochs} epochs x {steps} steps: "
              f"Ray Data {statistics.fmean(result['ray_images_per_s']):.1f} img/s vs reference LMDB+DataLoader "
              f"{statistics.fmean(result['reference_images_per_s']):.1f} img/s; ratio per repeat "
              f"{', '.join(f'{x:.2f}' for x in ratios)} (mean {s['mean']}, range {s['min']}-{s['max']}); "
              f"load average {result['loadavg_start'][0]} -> {result['loadavg_end'][0]}")
    print(json.dumps(result))
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
