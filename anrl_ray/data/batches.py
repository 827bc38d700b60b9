"""Worker side of the pipelines: balanced meta-learning batches and exact-once evaluation batches.

Both read a Ray Data shard (``ray.train.get_dataset_shard(...)``, or ``Dataset.iterator()``)
of the decoded rows made by :mod:`anrl_ray.data.pipeline` and hand out torch tensors; rows
that failed to decode (``ok`` False) are dropped and counted in a
:class:`~anrl_ray.data.checks.DecodeErrors`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from anrl_ray.data.checks import DecodeErrors
from anrl_ray.data.transforms import normalize

if TYPE_CHECKING:
    import ray.data

GROUP_CAP = 16  # fresh rows a (domain, class) queue may hold, in units of B (beyond: oldest dropped)
REUSE_CAP = 4  # recently used rows kept per group for the reuse fallback, in units of B

log = logging.getLogger(__name__)


class _Group:
    """Fresh samples of one (domain, class) waiting for a batch, and recently used ones for reuse.

    A sample is ``(image (C, H, W), depth (1, s, s))``: views into a per-chunk copy of the
    group's rows (never into Ray's block, which would stay pinned while a row waits).
    """

    def __init__(self, cap: int, reuse_cap: int):
        self.fresh: deque = deque()
        self.used: deque = deque(maxlen=reuse_cap)
        self.cap = cap
        self.seen = 0
        self.dropped = 0

    def add(self, sample: tuple) -> None:
        self.seen += 1
        if len(self.fresh) >= self.cap:  # the stream is ahead for this group: bound the memory
            self.used.append(self.fresh.popleft())
            self.dropped += 1
        self.fresh.append(sample)

    def take(self, n: int) -> list[tuple]:
        out = [self.fresh.popleft() for _ in range(n)]
        self.used.extend(out)
        return out


def meta_batches(
    shard: "ray.data.DataIterator",
    *,
    num_domains: int,
    batch_per_class: int,
    steps: int,
    seed: int,
    epoch: int,
    stats: dict[str, Any] | None = None,
    errors: DecodeErrors | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of balanced meta-learning batches from this worker's shard.

    Yields exactly ``steps`` batches, each ``{"image": (D*2B, C, H, W), "label": (D*2B,),
    "depth": (D*2B, 1, s, s), "domain_index": (D*2B,)}``, laid out domain by domain (index
    order) and, within a domain, ``B`` live then ``B`` spoof (the reference layout).

    Guarantees:
      * exactly ``steps`` batches on every worker (DDP needs equal step counts);
      * the shard is read to its end in every call (a streaming split only starts the next
        epoch once every worker has finished this one) - before the last batch is yielded,
        so it also holds when the caller stops after ``steps`` batches;
      * a sample is used at most once per epoch, except when a group's fresh samples on this
        worker run out: then the shortfall is filled with that group's most recently used
        samples (``stats["reused"]`` counts them). With ``training_dataset`` and
        ``steps_per_epoch`` each worker expects >= ``steps * B`` fresh rows per group, so
        reuse only covers sampling noise (a few rows);
      * fails with a clear error if a group has no row at all on this worker;
      * rows that failed to decode are never used: they are counted in ``errors`` (pass one
        :class:`DecodeErrors` per epoch; without it they are logged as a warning).

    ``stats`` (optional dict) is filled with counts: rows seen (decoded), used, reused, dropped.
    """
    D, B = num_domains, batch_per_class
    if steps < 1 or D < 1 or B < 1:
        raise ValueError(f"steps, num_domains and batch_per_class must be >= 1, got {steps}, {D}, {B}")
    groups = {(d, y): _Group(cap=GROUP_CAP * B, reuse_cap=REUSE_CAP * B) for d in range(D) for y in (0, 1)}
    rng = np.random.default_rng([seed, epoch, 7919])
    order = [(d, y) for d in range(D) for y in (0, 1)]
    labels = torch.tensor([y for _, y in order for _ in range(B)], dtype=torch.int64)
    domains = torch.tensor([d for d, _ in order for _ in range(B)], dtype=torch.int64)
    emitted = 0
    # whole blocks as the pipeline made them (batch_size=None): no re-batching copies
    it = iter(shard.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
    exhausted = False
    errs = errors if errors is not None else DecodeErrors()
    reused = 0
    rows_seen = 0

    def ready() -> bool:
        return all(len(groups[g].fresh) >= B for g in order)

    def fill(g: tuple[int, int]) -> list[tuple]:
        nonlocal reused
        grp = groups[g]
        take = grp.take(min(B, len(grp.fresh)))
        short = B - len(take)
        if short:
            pool = list(grp.used)[: len(grp.used) - len(take)] or list(grp.used)
            if not pool:
                raise RuntimeError(
                    f"meta_batches: no row of domain index {g[0]} / {'live' if g[1] == 0 else 'spoof'} reached this "
                    f"worker in epoch {epoch}; the training split is too small for world_size workers "
                    f"(use fewer workers, a smaller batch_per_class, or more data)"
                )
            take += [pool[i] for i in rng.integers(0, len(pool), short)]
            reused += short
        return take

    def enqueue(chunk: dict[str, np.ndarray]) -> int:
        good = _decoded_rows(chunk, errs)
        dom, lab = chunk["domain_index"][good].astype(np.int64), chunk["label"][good].astype(np.int64)
        bad = (dom < 0) | (dom >= D)
        if bad.any():
            raise ValueError(
                f"meta_batches: domain_index {int(dom[bad][0])} outside [0, {D}); num_domains must match the dataset"
            )
        for d, y in order:
            rows = good[(dom == d) & (lab == y)]
            if len(rows):
                images, depths = chunk["image"][rows], chunk["depth"][rows]  # one copy per group, stream order kept
                grp = groups[(d, y)]
                for k in range(len(rows)):
                    grp.add((images[k], depths[k]))
        return len(good)

    while emitted < steps:
        if not exhausted and not ready():
            try:
                rows_seen += enqueue(next(it))
            except StopIteration:
                exhausted = True
            continue
        if emitted == steps - 1 and not exhausted:
            for chunk in it:  # read the shard to its end before handing out the epoch's last batch
                rows_seen += len(_decoded_rows(chunk, errs))
            exhausted = True
        rows = [s for g in order for s in fill(g)]
        batch = {
            "image": torch.from_numpy(_float_images(np.stack([r[0] for r in rows]))),
            "label": labels.clone(),
            "depth": torch.from_numpy(np.stack([r[1] for r in rows])),
            "domain_index": domains.clone(),
        }
        emitted += 1
        if emitted == steps and stats is not None:
            stats.update(
                steps=emitted,
                rows_seen=rows_seen,
                used=emitted * 2 * D * B - reused,
                reused=reused,
                dropped=sum(g.dropped for g in groups.values()),
                per_group_seen={f"{d}/{y}": groups[(d, y)].seen for d, y in order},
                decode_failures=errs.count,
            )
        if emitted == steps and errors is None and errs.count:
            _warn_unreported(errs, f"meta_batches (epoch {epoch})")
        yield batch


def _float_images(images: np.ndarray) -> np.ndarray:
    """Decoded images as the model takes them: uint8 planes normalised, float32 copied (a new array)."""
    return normalize(images) if images.dtype == np.uint8 else np.array(images, dtype=np.float32)


def _decoded_rows(chunk: dict[str, np.ndarray], errors: DecodeErrors) -> np.ndarray:
    """Indices of the chunk's rows that decoded; the others are added to ``errors``."""
    if "ok" not in chunk or chunk["ok"].all():
        return np.arange(len(chunk["label"]))
    for i in np.flatnonzero(~chunk["ok"]):
        errors.add(str(chunk["failure"][i]))
    return np.flatnonzero(chunk["ok"])


def _warn_unreported(errors: DecodeErrors, where: str) -> None:
    log.warning("%s: %d row(s) failed to decode and were skipped, e.g. %s", where, errors.count, "; ".join(errors.examples[:3]))


def iter_eval_batches(
    shard: "ray.data.DataIterator", *, batch_size: int, errors: DecodeErrors | None = None
) -> Iterator[dict[str, Any]]:
    """Every decodable row of the shard exactly once.

    Yields ``image`` / ``depth`` / ``label`` / ``domain_index`` tensors and ``video_id``,
    ``domain`` and ``attack_type`` (``"live"``, ``"print"``, ...) lists of str. Rows that failed
    to decode are left out and counted in ``errors`` (without it: a logged warning); a batch may
    then hold fewer than ``batch_size`` rows, and one with none is skipped.
    """
    errs = errors if errors is not None else DecodeErrors()
    for b in shard.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=False, prefetch_batches=1):
        n = len(b["label"])
        keep = _decoded_rows(b, errs)
        if len(keep) == 0:
            continue
        if len(keep) < n:
            b = {k: v[keep] for k, v in b.items()}
        out = {
            "image": torch.from_numpy(_float_images(b["image"])),  # a new array: Ray's buffer is read-only
            "depth": torch.from_numpy(np.array(b["depth"], dtype=np.float32)),
            "label": torch.from_numpy(b["label"].astype(np.int64)),
            "domain_index": torch.from_numpy(b["domain_index"].astype(np.int64)),
            "video_id": [str(v) for v in b["video_id"]],
        }
        for col in ("domain", "attack_type"):
            out[col] = [str(v) for v in b[col]] if col in b else [""] * len(out["video_id"])
        yield out
    if errors is None and errs.count:
        _warn_unreported(errs, "iter_eval_batches")
