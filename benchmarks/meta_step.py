"""Benchmark one ANRL meta step (forwards, inner second-order grad, backward, optimizer step).

Synthetic data; prints ONE JSON line: images/s, s/step, peak memory, config.

    python benchmarks/meta_step.py --img-size 64 --width 0.25 --batch-per-class 4 --domains 3 \\
        --mode maml --device cpu --steps 5 --warmup 1
    python benchmarks/meta_step.py --img-size 256 --width 1.0 --device cuda --bf16 --steps 20 --warmup 3
    python benchmarks/meta_step.py --backbone resnet18 --img-size 32 --device cpu --steps 5 --warmup 1

``--backbone`` is ``anrl`` or a timm CNN name (``anrl_ray.backbones``; ``--width`` then scales
only the depth head).

Peak memory: CPU = the process's max RSS (``resource.getrusage``, includes the Python runtime);
CUDA = ``torch.cuda.max_memory_allocated`` (tensors only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import time

import torch

from anrl_ray.meta import MODES, MetaLearner
from anrl_ray.factory import create_model as build_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="anrl", help="anrl or a timm CNN name (resnet18, resnet50, efficientnet_b0, ...)")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-per-class", type=int, default=4, help="B: live and spoof samples per domain")
    p.add_argument("--domains", type=int, default=3)
    p.add_argument("--mode", choices=MODES, default="maml")
    p.add_argument("--norm", default="adaptive")
    p.add_argument("--attention", default="1layer")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.img_size % 8 or args.img_size < 8:
        p.error(f"--img-size must be a positive multiple of 8, got {args.img_size}")
    if args.steps < 1 or args.warmup < 0 or args.batch_per_class < 1 or args.domains < 2:
        p.error("need --steps >= 1, --warmup >= 0, --batch-per-class >= 1, --domains >= 2")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.bf16 and not args.device.startswith("cuda"):
        p.error("--bf16 is supported on CUDA only")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = build_model(backbone=args.backbone, width=args.width, norm=args.norm, attention=args.attention)
    learner = MetaLearner(model, args.domains, mode=args.mode).to(device).train()
    opt = torch.optim.Adam(learner.parameters(), lr=1e-4, weight_decay=1e-5)

    d, b, s = args.domains, args.batch_per_class, args.img_size
    n = d * 2 * b
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randn(n, 6, s, s, generator=g).to(device)  # (D*2B, 6, H, W)
    labels = torch.tensor(([0] * b + [1] * b) * d, device=device)
    depth = torch.rand(n, 1, s // 8, s // 8, generator=g).to(device)
    order_rng = torch.Generator().manual_seed(args.seed + 1)

    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if args.bf16
                else contextlib.nullcontext())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> float:
        order = torch.randperm(d, generator=order_rng).tolist()
        with autocast:
            loss, _ = learner(images, labels, depth, order)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    sync()
    elapsed = time.perf_counter() - t0

    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        peak_kind = "cuda_max_memory_allocated"
        device_name = torch.cuda.get_device_name(device)
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        peak_mb = rss_kb / (2**20 if sys.platform == "darwin" else 2**10)
        peak_kind = "cpu_max_rss"
        device_name = platform.processor() or platform.machine()
    result = {
        "images_per_s": round(n * args.steps / elapsed, 3),
        "s_per_step": round(elapsed / args.steps, 4),
        "peak_mem_mb": round(peak_mb, 1),
        "peak_mem_kind": peak_kind,
        "last_loss": round(last, 5),
        "config": {**vars(args), "images_per_step": n, "params": sum(p.numel() for p in model.parameters()),
                   "torch": torch.__version__, "threads": torch.get_num_threads(), "device_name": device_name},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
