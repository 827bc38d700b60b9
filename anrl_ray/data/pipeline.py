"""Ray Data pipelines: balanced meta-learning batches for training, exact-once evaluation.

Training data flow (one Ray Data plan, re-executed every epoch by Ray Train)::

    read_parquet(shards of every source domain)            encoded crops, a few columns
    -> select   (map_batches, Arrow)   keep the split; per (domain, class) Bernoulli
                                       subsample to ~1.25 x the smallest group; domain_index
    -> random_shuffle                  mixes domains and classes into every block, so each
                                       streaming_split shard gets every (domain, class) group
    -> decode   (map_batches)          transforms.FASTransform: decode, augment, RGB+HSV,
                                       depth target  ->  image, depth, label, domain_index, video_id,
                                       ok, failure (a row that does not decode: dropped + counted
                                       by the consumer, named by shard file and row)
    -> streaming_split(world_size)     done by Ray Train (DataConfig)
    -> meta_batches (on each worker)   per (domain, class) queues -> D x (B live + B spoof)

Epoch definition (``steps_per_epoch``): ``n = min over source domains of min(#live, #spoof)``
in the split (from the manifests); ``steps = max(1, n // (B * world_size))``. The reference
uses the *largest* domain's count and cycles the smaller ones (index modulo length); here no
sample is drawn twice in an epoch except to cover sampling noise, so an epoch is shorter
when domains differ in size (it sees all of the smallest group and a fresh random subset of
the others each epoch). See :func:`meta_batches` for the per-worker guarantees.

Randomness (row subsample, shuffle, augmentation) is derived from ``seed``, Ray Data's
execution index (one per epoch) and the block content: a new draw every epoch. Ray Data's
parallel execution does not promise a bitwise-identical row order, so runs repeat
statistically, not bit for bit.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from anrl_ray.data.checks import DecodeErrors, row_name
from anrl_ray.data.format import SPLITS, DatasetFormatError, read_manifest, shard_paths
from anrl_ray.data.transforms import FASTransform

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data
    import ray.train

# Groups are subsampled to at most KEEP_MARGIN x the smallest group per epoch: the margin absorbs
# the randomness of the subsample and of the split between workers without decoding rows that
# no step will use.
KEEP_MARGIN = 1.25
CACHE_MAX_BYTES = 512 * 1024**2  # encoded shards up to this size are read once, not every epoch
DECODE_BATCH = 32  # rows per decode task call (bounded memory at 256 px: 32 x 1.5 MB)
GROUP_CAP = 16  # fresh rows a (domain, class) queue may hold, in units of B (beyond: oldest dropped)
REUSE_CAP = 4  # recently used rows kept per group for the reuse fallback, in units of B
READ_COLUMNS = ["image", "depth", "label", "attack_type", "domain", "video_id", "frame_index", "split", "path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSpec:
    """What the network is fed.

    Attributes:
        img_size: input H = W (divisible by 8); stored crops are resized to it.
        in_channels: 6 = RGB + HSV (reference), 3 = RGB.
    """

    img_size: int = 256
    in_channels: int = 6

    def __post_init__(self) -> None:
        if self.img_size <= 0 or self.img_size % 8:
            raise ValueError(f"InputSpec.img_size must be a positive multiple of 8, got {self.img_size}")
        if self.in_channels not in (3, 6):
            raise ValueError(f"InputSpec.in_channels must be 6 (RGB+HSV) or 3 (RGB), got {self.in_channels}")

    @property
    def depth_size(self) -> int:
        return self.img_size // 8


# --------------------------------------------------------------------------- manifests


def _manifests(data_root: str | Path, domains: Sequence[str]) -> dict[str, dict[str, Any]]:
    root = Path(data_root)
    if not domains:
        raise DatasetFormatError("no domains given: name at least one domain folder under the data root")
    if len(set(domains)) != len(domains):
        raise DatasetFormatError(f"domains {list(domains)} repeat a name")
    out = {}
    for d in domains:
        if not (root / d).is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
            raise DatasetFormatError(
                f"domain {d!r}: folder {root / d} not found; the data root {root} must hold one converted dataset "
                f"per domain (found: {', '.join(have) or 'none'}); create it with `anrl-ray convert ...`"
            )
        out[d] = read_manifest(root / d)
    return out


def _class_counts(manifest: dict[str, Any], split: str) -> tuple[int, int]:
    per = manifest["counts"].get(split, {})
    return sum(per.get("live", {}).values()), sum(per.get("spoof", {}).values())


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetFormatError(f"split {split!r}: must be one of {', '.join(SPLITS)}")


def group_counts(data_root: str | Path, domains: Sequence[str], split: str) -> dict[tuple[int, int], int]:
    """Rows per (domain index, label) in ``split``, from the manifests; every group must be non-empty."""
    _check_split(split)
    counts = {}
    for i, (d, m) in enumerate(_manifests(data_root, domains).items()):
        live, spoof = _class_counts(m, split)
        if live == 0 or spoof == 0:
            raise DatasetFormatError(
                f"domain {d!r} has {live} live and {spoof} spoof rows in split {split!r} "
                f"({Path(data_root) / d}); balanced batches need both classes in every source domain"
            )
        counts[(i, 0)], counts[(i, 1)] = live, spoof
    return counts


def steps_per_epoch(
    data_root: str | Path, domains: Sequence[str], *, split: str = "train", batch_per_class: int, world_size: int
) -> int:
    """Meta-learning steps per epoch: ``max(1, min_d min(#live_d, #spoof_d) // (B * world_size))``."""
    if batch_per_class < 1 or world_size < 1:
        raise ValueError(f"batch_per_class and world_size must be >= 1, got {batch_per_class}, {world_size}")
    n = min(group_counts(data_root, domains, split).values())
    return max(1, n // (batch_per_class * world_size))


# --------------------------------------------------------------------------- Ray Data stages


def _execution_index() -> int:
    """Ray Data's per-process execution counter (one per epoch); 0 if this Ray has none."""
    try:
        from ray.data import DataContext

        return int(getattr(DataContext.get_current(), "_execution_idx", 0))
    except Exception:  # noqa: BLE001 - outside a Ray Data task: a constant is fine
        return 0


def _content_key(video_ids: Sequence[str], frames: Sequence[int]) -> int:
    """A stable number identifying a batch by its first and last rows (seeds per-batch RNGs)."""
    if len(video_ids) == 0:
        return 0
    key = f"{video_ids[0]}|{frames[0]}|{video_ids[-1]}|{frames[-1]}|{len(video_ids)}"
    return zlib.crc32(key.encode())


class _Select:
    """Arrow batch -> the rows of ``split``, with ``label`` int64 and ``domain_index`` (into ``domains``)."""

    def __init__(self, domains: Sequence[str], split: str):
        self.index = {d: i for i, d in enumerate(domains)}
        self.split = split

    def __call__(self, table: "pa.Table") -> "pa.Table":
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table["split"], self.split))
        domain = table["domain"].to_pylist()
        unknown = set(domain) - set(self.index)
        if unknown:
            raise DatasetFormatError(f"rows of domain(s) {sorted(unknown)} inside folders of {sorted(self.index)}")
        dom_idx = pa.array(np.array([self.index[d] for d in domain], np.int64))
        label = pa.array(table["label"].to_numpy().astype(np.int64))
        table = table.drop_columns(["split", "label"])
        return table.append_column("label", label).append_column("domain_index", dom_idx)


class _Subsample:
    """Keep each row with its (domain, class) probability; a new draw every epoch (execution)."""

    def __init__(self, keep: dict[tuple[int, int], float], seed: int):
        self.keep = keep
        self.seed = seed

    def __call__(self, table: "pa.Table") -> "pa.Table":
        import pyarrow as pa

        if not len(table):
            return table
        vid = table["video_id"].to_pylist()
        frame = table["frame_index"].to_pylist()
        rng = np.random.default_rng([self.seed, _execution_index(), _content_key(vid, frame)])
        dom = table["domain_index"].to_numpy()
        label = table["label"].to_numpy()
        p = np.array([self.keep[(int(d), int(y))] for d, y in zip(dom, label)])
        return table.filter(pa.array(rng.random(len(p)) < p))


def _decode(
    table: "pa.Table", *, img_size: int, in_channels: int, augment: bool, seed: int, keep_domain: bool
) -> dict[str, np.ndarray]:
    """Arrow batch of encoded rows -> model-ready numpy columns (see module docstring).

    A row whose image (or live depth map) does not decode gets zeros, ``ok`` False and a
    ``failure`` string naming its shard and row; the consumers drop and count it.
    A plain function (Ray tasks), not an actor class: actors would hold a CPU for the whole
    epoch, and on a 2-CPU machine the read and shuffle tasks need it.
    """
    import cv2

    vid = table["video_id"].to_pylist()
    frame = table["frame_index"].to_pylist()
    aug_seed = None
    if augment:
        aug_seed = int(np.random.default_rng([seed, _execution_index(), _content_key(vid, frame)]).integers(2**31))
    tf = FASTransform(img_size, in_channels, augment=augment, seed=aug_seed)
    label = table["label"].to_numpy().astype(np.int64)
    images, depths = table["image"].to_pylist(), table["depth"].to_pylist()
    n, s = len(label), tf.depth_size
    image = np.zeros((n, in_channels, img_size, img_size), np.float32)
    depth = np.zeros((n, 1, s, s), np.float32)
    ok = np.ones(n, bool)
    failure = [""] * n
    for i in range(n):  # what FASTransform.batch does, row by row: the same augmentation draws
        try:
            image[i], depth[i] = tf(images[i], depths[i], label[i])
        except (ValueError, cv2.error) as e:
            ok[i] = False
            path = table["path"][i].as_py() if "path" in table.column_names else ""
            reason = str(e).strip().splitlines()[-1]
            failure[i] = f"{row_name(path, vid[i], frame[i])}: {reason} (video {vid[i]}, frame {frame[i]})"
    out = {
        "image": image,
        "depth": depth,
        "label": label,
        "domain_index": table["domain_index"].to_numpy().astype(np.int64),
        "video_id": np.array(vid, dtype=object),
        "ok": ok,
        "failure": np.array(failure, dtype=object),
    }
    if keep_domain:
        out["domain"] = np.array(table["domain"].to_pylist(), dtype=object)
        out["attack_type"] = np.array(table["attack_type"].to_pylist(), dtype=object)
    return out


def _decoded(ds: "ray.data.Dataset", spec: InputSpec, *, augment: bool, seed: int, keep_domain: bool) -> "ray.data.Dataset":
    kwargs = dict(img_size=spec.img_size, in_channels=spec.in_channels, augment=augment, seed=seed, keep_domain=keep_domain)
    return ds.map_batches(_decode, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=DECODE_BATCH)


def _encoded_rows(
    data_root: str | Path, domains: Sequence[str], split: str, num_blocks: int, cache: bool | None
) -> "ray.data.Dataset":
    """The split's rows, still encoded: read + select (+ cached in the object store if small).

    Reading Parquet costs Ray Data about a second of fixed overhead per execution (file
    listing, metadata, read tasks), i.e. per epoch; with ``cache`` the encoded rows are read
    once and only the per-epoch stages (subsample, shuffle, decode) run again. ``None``
    caches when the domains' shards total at most ``CACHE_MAX_BYTES``.
    """
    import ray.data

    paths = [p for d in domains for p in shard_paths(Path(data_root) / d)]
    if cache is None:
        cache = sum(Path(p).stat().st_size for p in paths) <= CACHE_MAX_BYTES
    ds = ray.data.read_parquet(paths, override_num_blocks=num_blocks, include_paths=True).select_columns(READ_COLUMNS)
    ds = ds.map_batches(_Select(domains, split), batch_format="pyarrow", batch_size=None)
    # a fixed block order: the per-epoch shuffle and subsample then repeat across runs (resume)
    ds.context.execution_options.preserve_order = True
    return ds.materialize() if cache else ds


def training_dataset(
    data_root: str | Path,
    domains: Sequence[str],
    *,
    spec: InputSpec,
    split: str = "train",
    augment: bool = True,
    seed: int = 0,
    cache: bool | None = None,
) -> "ray.data.Dataset":
    """Shuffled, per-(domain, class) rebalanced, decoded and augmented training rows.

    Columns: ``image`` float32 ``(C, H, W)``, ``depth`` float32 ``(1, s, s)`` (zeros for spoof),
    ``label`` int64 (0 live, 1 spoof), ``domain_index`` int64 (index into ``domains``),
    ``video_id`` str, ``ok`` bool and ``failure`` str (False / the reason for a row that did not
    decode: its image is zeros; the consumers drop it). Every (domain, class) group is subsampled
    to at most ``KEEP_MARGIN`` x the smallest group (a new subset each epoch), then all rows are
    shuffled globally so that every streaming-split shard holds every group in proportion. Consume with :func:`meta_batches`.
    ``cache``: keep the encoded split in Ray's object store (default: if small, see
    :func:`_encoded_rows`); it is read when this function is called.
    """
    import ray.data

    counts = group_counts(data_root, domains, split)
    smallest = min(counts.values())
    keep = {g: min(1.0, KEEP_MARGIN * smallest / n) for g, n in counts.items()}
    expected_rows = sum(n * keep[g] for g, n in counts.items())
    # random_shuffle keeps the number of blocks: ask the read for enough of them that the
    # streaming split has a fine granularity (and decode tasks stay small)
    num_blocks = int(min(256, max(4, expected_rows // 128)))
    ds = _encoded_rows(data_root, domains, split, num_blocks, cache)
    ds = ds.map_batches(_Subsample(keep, seed), batch_format="pyarrow", batch_size=None)
    ds = ds.random_shuffle(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    return _decoded(ds, spec, augment=augment, seed=seed, keep_domain=False)


def eval_dataset(
    data_root: str | Path, domains: Sequence[str], *, spec: InputSpec, split: str, cache: bool | None = None
) -> "ray.data.Dataset":
    """Every row of ``split`` in ``domains``, decoded without augmentation.

    Columns as :func:`training_dataset` plus ``domain`` and ``attack_type`` (str). Video ids are
    unique within a domain: group frames by ``(domain, video_id)``. ``cache`` as in :func:`training_dataset`.
    """
    _check_split(split)
    mans = _manifests(data_root, domains)
    empty = [d for d, m in mans.items() if sum(_class_counts(m, split)) == 0]
    if empty:
        raise DatasetFormatError(f"domain(s) {empty} have no rows in split {split!r} under {data_root}")
    rows = sum(sum(_class_counts(m, split)) for m in mans.values())
    # several blocks even for small sets, so that a split across workers shares the decoding
    ds = _encoded_rows(data_root, domains, split, int(min(256, max(2 * len(domains), rows // 256))), cache)
    return _decoded(ds, spec, augment=False, seed=0, keep_domain=True)


# --------------------------------------------------------------------------- worker side


class _Group:
    """Fresh samples of one (domain, class) waiting for a batch, and recently used ones for reuse."""

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
        samples (``stats["reused"]`` counts them). With :func:`training_dataset` and
        :func:`steps_per_epoch` each worker expects >= ``steps * B`` fresh rows per group, so
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
    emitted = 0
    it = iter(shard.iter_batches(batch_size=max(32, 2 * D * B), batch_format="numpy", prefetch_batches=1))
    exhausted = False
    errs = errors if errors is not None else DecodeErrors()

    def ready() -> bool:
        return all(len(groups[g].fresh) >= B for g in order)

    def assemble(parts: list[list[tuple]]) -> dict[str, torch.Tensor]:
        rows = [s for part in parts for s in part]
        return {
            "image": torch.from_numpy(np.stack([r[0] for r in rows])),
            "label": torch.tensor([r[1] for r in rows], dtype=torch.int64),
            "depth": torch.from_numpy(np.stack([r[2] for r in rows])),
            "domain_index": torch.tensor([r[3] for r in rows], dtype=torch.int64),
        }

    def fill(g: tuple[int, int]) -> list[tuple]:
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
            reused[0] += short
        return take

    def drain() -> None:
        nonlocal exhausted, rows_seen
        for chunk in it:
            rows_seen += len(_decoded_rows(chunk, errs))
        exhausted = True

    reused = [0]
    rows_seen = 0
    while emitted < steps:
        if not exhausted and not ready():
            try:
                chunk = next(it)
            except StopIteration:
                exhausted = True
                continue
            lab, dom = chunk["label"], chunk["domain_index"]
            good = _decoded_rows(chunk, errs)
            rows_seen += len(good)
            for i in good:
                d = int(dom[i])
                if not 0 <= d < D:
                    raise ValueError(f"meta_batches: domain_index {d} outside [0, {D}); num_domains must match the dataset")
                # copies: a view would pin the whole chunk (and its object-store buffer) while queued
                groups[(d, int(lab[i]))].add((chunk["image"][i].copy(), int(lab[i]), chunk["depth"][i].copy(), d))
            continue
        if emitted == steps - 1 and not exhausted:
            drain()  # read the shard to its end before handing out the epoch's last batch
        batch = assemble([fill(g) for g in order])
        emitted += 1
        if emitted == steps and stats is not None:
            stats.update(
                steps=emitted,
                rows_seen=rows_seen,
                used=emitted * 2 * D * B - reused[0],
                reused=reused[0],
                dropped=sum(g.dropped for g in groups.values()),
                per_group_seen={f"{d}/{y}": groups[(d, y)].seen for d, y in order},
                decode_failures=errs.count,
            )
        if emitted == steps and errors is None and errs.count:
            _warn_unreported(errs, f"meta_batches (epoch {epoch})")
        yield batch


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
            "image": torch.from_numpy(np.array(b["image"], dtype=np.float32)),  # a copy: Ray's buffer is read-only
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


def data_config(exact: Sequence[str] = ("val", "test"), equal: Sequence[str] = ("train",), **kwargs: Any) -> "ray.train.DataConfig":
    """A Ray Train ``DataConfig`` that splits evaluation sets without dropping rows.

    ``ray.train.DataConfig`` splits every dataset with ``streaming_split(n, equal=True)``,
    which balances row counts by dropping up to ``n - 1`` rows: an evaluation set would then
    silently miss frames (the reference's ``drop_last`` problem again). This one splits the
    ``equal`` datasets as Ray does (``meta_batches`` yields the same step count everywhere
    anyway) and the ``exact`` ones with ``equal=False``: every row on exactly one worker, so
    gathering all workers' scores covers the set once. Other datasets are not split.
    """
    import ray.train

    class _ExactEvalDataConfig(ray.train.DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kw):  # noqa: ANN001
            plain = {k: v for k, v in datasets.items() if k not in exact}
            output = super().configure(plain, world_size, worker_handles, worker_node_ids, **kw)
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                if name not in exact:
                    continue
                if ds.name is None:
                    ds.set_name(name)
                ds = ds.copy(ds)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, it in enumerate(ds.streaming_split(world_size, equal=False, locality_hints=hints)):
                    output[i][name] = it
            return output

    return _ExactEvalDataConfig(datasets_to_split=list(equal), **kwargs)
