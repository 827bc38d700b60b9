"""Ray Data pipelines: balanced meta-learning batches for training, exact-once evaluation.

Training data flow (one Ray Data plan, re-executed every epoch by Ray Train)::

    read_parquet(shards of every source domain)            encoded crops, a few columns
    -> select   (map_batches, Arrow)   keep the split; domain_index; cached in the object
                                       store when small (``cache``, the default up to 512 MB)
    -> epoch rows                      per (domain, class) subsample to ~1.25 x the smallest
                                       group, then a global shuffle: every streaming_split
                                       shard gets every (domain, class) group
    -> decode   (map_batches)          transforms.FASTransform: decode, augment, RGB+HSV,
                                       depth target  ->  image, depth, label, domain_index, video_id,
                                       ok, failure (a row that does not decode: dropped + counted
                                       by the consumer, named by shard file and row)
    -> each rank's share               in a search (cached splits): every rank executes its own
                                       plan and keeps rows r, r + w, ... of the epoch order;
                                       otherwise streaming_split(world_size) by Ray Train (DataConfig)
    -> meta_batches (on each worker)   per (domain, class) queues -> D x (B live + B spoof)

The worker side (:func:`~anrl_ray.data.batches.meta_batches`,
:func:`~anrl_ray.data.batches.iter_eval_batches`) and the epoch length / Ray Train split
(:mod:`anrl_ray.data.ingest`) live in their own modules; their public names are re-exported here.

Epoch rows, cached split (the usual case): one Ray task per slice of the epoch's rows reads
the cached Arrow tables (zero-copy, object store), draws the epoch's subsample (exactly
``min(n, ceil(1.25 x smallest))`` rows per group) and global permutation - the same in every
task - and decodes its slice of it. No all-to-all shuffle, no barrier: the first rows of an
epoch are decoded as soon as the epoch starts. Not cached (a large split, or ``cache=False``):
a per-block Bernoulli subsample and Ray Data's ``random_shuffle`` (an all-to-all) instead.

Throughput: a decode task works on Arrow buffers (no Python ``bytes`` per row), writes uint8
planes into a preallocated ``(N, C, H, W)`` array (:meth:`FASTransform.planes`) and hands out
every ``BLOCK_ROWS`` rows as a block, so the consumer works while the task decodes on. The
images travel as uint8 (a quarter of float32's bytes through the object store); the consumers
normalise them (:func:`anrl_ray.data.transforms.normalize`) while assembling a batch. A few
long tasks per epoch (``TASK_BYTES``): Ray Data pays ~10-30 ms per task and ~0.1 s per epoch.

Randomness (row subsample, shuffle, augmentation) is derived from ``seed``, Ray Data's
execution index (one per epoch) and the rows of each decoded batch: a new draw every epoch,
the same again in a resumed run. The cached path hands out the same rows in the same order
in every run; the uncached one relies on Ray Data's ordering of its parallel shuffle, so runs
repeat statistically there, not necessarily bit for bit.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from anrl_ray.data.checks import row_name
from anrl_ray.data.format import DatasetFormatError, shard_paths
from anrl_ray.data.ingest import check_split, class_counts, data_config, group_counts, read_manifests, steps_per_epoch
from anrl_ray.data.transforms import FASTransform, InputSpec

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = [
    "InputSpec",
    "data_config",
    "eval_dataset",
    "group_counts",
    "rank_streams_available",
    "steps_per_epoch",
    "training_dataset",
]  # and, imported when first used (see __getattr__ below): iter_eval_batches, meta_batches


def __getattr__(name: str):
    """The consumer side, re-exported lazily: it imports torch (~1 s, ~300 MB), which a process that
    imports this module only to decode does not need. (Ray Data's evaluation decode tasks so stay
    without torch; the augmenting training ones still load it: ``import albumentations`` imports
    its ``albumentations.pytorch`` helpers.)"""
    if name in ("iter_eval_batches", "meta_batches"):
        from anrl_ray.data import batches

        return getattr(batches, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Groups are subsampled to at most KEEP_MARGIN x the smallest group per epoch: the margin absorbs
# the randomness of the split between workers (and of the Bernoulli subsample of an uncached
# split) without decoding many rows that no step will use.
KEEP_MARGIN = 1.25
CACHE_MAX_BYTES = 512 * 1024**2  # encoded shards up to this size are read once, not every epoch
DECODE_BATCH = 32  # rows per decode call (its temporaries: 32 x 1.5 MB at 256 px)
BLOCK_ROWS = 64  # decoded rows per output block (uint8: 64 x 393 KB at 256 px); see _block_target
TASK_BYTES = 96 * 1024**2  # decoded bytes per training decode task and epoch (~0.2 s of work at 64 or 256 px)
MIN_TASK_ROWS = 128  # ... but down to this many rows per task to give every CPU of the cluster a task
READ_COLUMNS = ["image", "depth", "label", "attack_type", "domain", "video_id", "frame_index", "split", "path"]


def _execution_index() -> int:
    """Ray Data's per-process execution counter (one per epoch); 0 if this Ray has none."""
    try:
        from ray.data import DataContext

        return int(getattr(DataContext.get_current(), "_execution_idx", 0))
    except Exception:  # noqa: BLE001 - outside a Ray Data task: a constant is fine
        return 0


def start_at_epoch(ds: "ray.data.Dataset", epoch: int) -> None:
    """Make the next execution of ``ds`` its epoch ``epoch``: a resumed run sees the data of an uninterrupted one.

    Ray Data counts a dataset's executions from 0 in the private ``DataContext._execution_idx``
    (ray 2.60), which ``RandomSeedConfig(reseed_after_execution=True)`` and this pipeline's per-epoch
    seeds (:func:`_execution_index`) read; the count survives ``ds.copy`` and ``streaming_split``.
    Guarded by the resume tests (tests/test_pipeline.py, tests/test_trial.py, tests/test_faults.py).
    """
    ds.context._execution_idx = epoch


def _content_key(video_ids: Sequence[str], frames: Sequence[int]) -> int:
    """A stable number identifying a batch by its first and last rows (seeds per-batch RNGs)."""
    if len(video_ids) == 0:
        return 0
    key = f"{video_ids[0]}|{frames[0]}|{video_ids[-1]}|{frames[-1]}|{len(video_ids)}"
    return zlib.crc32(key.encode())


def binary_views(column: "pa.ChunkedArray") -> list[np.ndarray | None]:
    """A binary Arrow column -> one read-only uint8 view per row (None for null), no copies."""
    import pyarrow as pa

    out: list[np.ndarray | None] = []
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        if pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type):
            _, offsets_buf, data_buf = chunk.buffers()
            width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
            offsets = np.frombuffer(offsets_buf, width)[chunk.offset : chunk.offset + len(chunk) + 1]
            data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
            valid = chunk.is_valid().to_numpy(zero_copy_only=False) if chunk.null_count else None
            out.extend(
                None if valid is not None and not valid[i] else data[offsets[i] : offsets[i + 1]] for i in range(len(chunk))
            )
        else:  # another binary-like type: plain bytes
            out.extend(chunk.to_pylist())
    return out


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
    vid = table["video_id"].to_numpy(zero_copy_only=False)
    frame = table["frame_index"].to_numpy(zero_copy_only=False)
    aug_seed = None
    if augment:
        aug_seed = int(np.random.default_rng([seed, _execution_index(), _content_key(vid, frame)]).integers(2**31))
    tf = FASTransform(img_size, in_channels, augment=augment, seed=aug_seed)
    label = table["label"].to_numpy(zero_copy_only=False).astype(np.int64)
    failures: list[tuple[int, str]] = []
    image, depth = tf.planes(binary_views(table["image"]), binary_views(table["depth"]), label, failures=failures)
    ok = np.ones(len(label), bool)
    failure = np.full(len(label), "", dtype=object)
    for i, reason in failures:
        ok[i] = False
        path = table["path"][i].as_py() if "path" in table.column_names else ""
        v, f = str(vid[i]), int(frame[i])
        failure[i] = f"{row_name(path, v, f)}: {reason} (video {v}, frame {f})"
    out = {
        "image": image,
        "depth": depth,
        "label": label,
        "domain_index": table["domain_index"].to_numpy(zero_copy_only=False).astype(np.int64),
        "video_id": vid.astype(object),
        "ok": ok,
        "failure": failure,
    }
    if keep_domain:
        out["domain"] = table["domain"].to_numpy(zero_copy_only=False).astype(object)
        out["attack_type"] = table["attack_type"].to_numpy(zero_copy_only=False).astype(object)
    return out


def _block_target(ds: "ray.data.Dataset", spec: InputSpec) -> "ray.data.Dataset":
    """Hand out decoded rows in blocks of ``BLOCK_ROWS`` as soon as they are made.

    ``BLOCK_ROWS`` rows exceed the target (so Ray emits them without waiting for the next
    batch) by less than Ray's 1.5x slicing threshold (so the block stays whole). Measured at
    64 px on 2 CPUs: blocks of 64 rows beat 16 / 32 (Ray's driver-side cost per block) and
    128 (the consumer waits longer for its first rows).
    """
    ds.context.target_max_block_size = int(0.9 * BLOCK_ROWS * _row_bytes(spec))
    return ds


def _row_bytes(spec: InputSpec) -> int:
    """Bytes of one decoded row: uint8 image planes + float32 depth map."""
    return spec.in_channels * spec.img_size**2 + 4 * spec.depth_size**2


def _decode_kwargs(spec: InputSpec, *, augment: bool, seed: int, keep_domain: bool) -> dict:
    return dict(img_size=spec.img_size, in_channels=spec.in_channels, augment=augment, seed=seed, keep_domain=keep_domain)


def _decoded(ds: "ray.data.Dataset", spec: InputSpec, *, augment: bool, seed: int, keep_domain: bool) -> "ray.data.Dataset":
    """Every row of ``ds`` decoded, ``DECODE_BATCH`` rows at a time, one task per block of ``ds``."""
    kwargs = _decode_kwargs(spec, augment=augment, seed=seed, keep_domain=keep_domain)
    return _block_target(ds.map_batches(_decode, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=DECODE_BATCH), spec)


def epoch_rows(
    domain_index: np.ndarray, label: np.ndarray, quota: dict[tuple[int, int], int], rng: np.random.Generator
) -> np.ndarray:
    """One epoch's row indices: ``quota[g]`` random rows of every (domain, class) group, shuffled together."""
    picked = []
    for (d, y), m in quota.items():
        rows = np.flatnonzero((domain_index == d) & (label == y))
        picked.append(rng.choice(rows, size=min(m, len(rows)), replace=False))
    return rng.permutation(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def _decode_slices(
    tasks: dict[str, np.ndarray], *, refs: list, quota: dict[tuple[int, int], int], seed: int, num_slices: int, decode: dict,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, np.ndarray]]:
    """Ray task: the epoch's rows of slice ``tasks["id"]`` (of ``num_slices``), decoded batch by batch.

    Every task draws the same epoch order (seeded by ``seed`` and the execution index) from
    the cached encoded tables ``refs``, keeps rank ``shard[0]``'s share of it (rows r, r + w,
    ... of ``w = shard[1]`` ranks, cut to ``len // w`` rows: every rank gets as many) and
    decodes its contiguous part of that.
    """
    import pyarrow as pa
    import ray

    table = pa.concat_tables(ray.get(list(refs)))  # zero-copy views of the object store
    rng = np.random.default_rng([seed, _execution_index(), 104729])
    dom, lab = (table[c].to_numpy(zero_copy_only=False) for c in ("domain_index", "label"))
    order = epoch_rows(dom, lab, quota, rng)
    rank, world = shard
    order = order[rank::world][: len(order) // world]
    for k in tasks["id"]:
        part = np.array_split(order, num_slices)[int(k)]
        for start in range(0, len(part), DECODE_BATCH):
            yield _decode(table.take(part[start : start + DECODE_BATCH]), **decode)


def _cached_blocks(paths: Sequence[Path], domains: Sequence[str], split: str, num_blocks: int, cache: bool | None) -> list | None:
    """The split's rows (of ``domains`` in shard files ``paths``), still encoded, as ``num_blocks``
    Arrow blocks in Ray's object store; None if not cached.

    Reading Parquet costs Ray Data about a second of fixed overhead per execution (file
    listing, metadata, read tasks), i.e. per epoch; with ``cache`` the encoded rows are read
    once (here) and only the per-epoch stages (subsample, shuffle, decode) run again. ``None``
    caches when the domains' shards total at most ``CACHE_MAX_BYTES``. Inside a search, a
    cached split comes from the search's :class:`EncodedSplits` (read once for all its trials).
    A split that is not cached is read per execution with :func:`_read_encoded`.
    """
    if not (_fits_cache(paths) if cache is None else cache):
        return None
    refs = _shared_split(paths, domains, split, num_blocks)
    if refs is None:
        refs = _read_encoded(paths, domains, split, num_blocks).repartition(num_blocks).materialize().to_arrow_refs()
    return refs


def _blocks_dataset(refs: list) -> "ray.data.Dataset":
    """A dataset over cached blocks, in their order (Ray Data reads every block's metadata: a task each)."""
    import ray.data

    ds = ray.data.from_arrow_refs(refs)
    ds.context.execution_options.preserve_order = True
    return ds


def _read_encoded(paths: Sequence[str], domains: Sequence[str], split: str, num_blocks: int) -> "ray.data.Dataset":
    import ray.data

    ds = ray.data.read_parquet(list(paths), override_num_blocks=num_blocks, include_paths=True).select_columns(READ_COLUMNS)
    ds = ds.map_batches(_Select(domains, split), batch_format="pyarrow", batch_size=None)
    # a fixed block order: the per-epoch shuffle and subsample then repeat across runs (resume)
    ds.context.execution_options.preserve_order = True
    return ds


def _domain_paths(data_root: str | Path, domains: Sequence[str]) -> list[Path]:
    return [p for d in domains for p in shard_paths(Path(data_root) / d)]


def _fits_cache(paths: Sequence[str | Path]) -> bool:
    return sum(Path(p).stat().st_size for p in paths) <= CACHE_MAX_BYTES


def rank_streams_available(data_root: str | Path, domains: Sequence[str]) -> bool:
    """Whether every rank can read its own share of ``domains`` (``shard=`` of :func:`training_dataset`
    and :func:`eval_dataset`): the splits are cached and shared by the search's :class:`EncodedSplits`.

    Each rank then executes its own datasets: no Ray Train ``DataConfig``, whose dataset manager
    and split coordinators (one actor each, started per trial) cost several seconds of every
    trial's start-up on a small machine (docs/NOTES.md, "Where a trial's fixed cost goes").
    """
    import ray

    if not ray.is_initialized() or not _fits_cache(_domain_paths(data_root, domains)):
        return False
    try:
        ray.get_actor(SHARED_SPLITS_ACTOR)
    except ValueError:
        return False
    return True


SHARED_SPLITS_ACTOR = "anrl-ray-encoded-splits"
_shared_splits_handle = None


class EncodedSplits:
    """Ray actor: the cached encoded splits of a search, read once and lent to every trial.

    Every trial of a search reads the same splits (sources' train and dev, target's test); read
    per trial, that is several seconds of Ray Data start-up each. The search driver starts this
    actor (:func:`share_encoded_splits`); it owns the materialised blocks (so they live as long
    as the driver) and hands out their object references. A split is keyed by its shard files'
    paths, sizes and modification times, its domains, split name and block count.
    """

    def __init__(self) -> None:
        self._kept: dict[str, list] = {}

    def get(self, key: str, paths: list[str], domains: list[str], split: str, num_blocks: int) -> list:
        import ray

        if key not in self._kept:
            ds = _read_encoded(paths, domains, split, num_blocks).repartition(num_blocks).materialize()
            # copied into this actor's node (the head): blocks left on a worker node would be lost
            # with it, and a trial restarted after a node loss would wait for them forever
            self._kept[key] = [ray.put(ray.get(ref)) for ref in ds.to_arrow_refs()]
        return self._kept[key]


def share_encoded_splits() -> None:
    """Start the search's :class:`EncodedSplits` (in the driver: it lives as long as the driver's job)."""
    import ray

    global _shared_splits_handle  # a named actor lives only as long as a handle to it: the driver keeps one
    # on the head node: a worker node that dies takes no trial's data with it
    _shared_splits_handle = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})(EncodedSplits).options(
        name=SHARED_SPLITS_ACTOR, get_if_exists=True).remote()


def _shared_split(paths: Sequence[str], domains: Sequence[str], split: str, num_blocks: int) -> list | None:
    """The split's cached blocks from the search's :class:`EncodedSplits`; None outside a search."""
    import hashlib
    import json
    import os

    import ray

    if not ray.is_initialized():
        return None
    try:
        actor = ray.get_actor(SHARED_SPLITS_ACTOR)
    except ValueError:
        return None
    stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    key = hashlib.sha256(json.dumps([stats, list(domains), split, num_blocks]).encode()).hexdigest()
    try:
        return ray.get(actor.get.remote(key, [str(p) for p in paths], list(domains), split, num_blocks))
    except ray.exceptions.RayActorError:  # gone (its node died): this trial reads the split itself
        return None


def training_dataset(
    data_root: str | Path,
    domains: Sequence[str],
    *,
    spec: InputSpec,
    split: str = "train",
    augment: bool = True,
    seed: int = 0,
    cache: bool | None = None,
    shard: tuple[int, int] | None = None,
) -> "ray.data.Dataset":
    """Shuffled, per-(domain, class) rebalanced, decoded and augmented training rows.

    Columns: ``image`` uint8 ``(C, H, W)`` (resized, not yet normalised: the consumers apply
    :func:`~anrl_ray.data.transforms.normalize`), ``depth`` float32 ``(1, s, s)`` (zeros for
    spoof), ``label`` int64 (0 live, 1 spoof), ``domain_index`` int64 (index into ``domains``),
    ``video_id`` str, ``ok`` bool and ``failure`` str (False / the reason for a row that did not
    decode: its image is zeros; the consumers drop it). Every (domain, class) group is subsampled
    to at most ``KEEP_MARGIN`` x the smallest group (a new subset each epoch), then all rows are
    shuffled globally so that every streaming-split shard holds every group in proportion.
    Consume with :func:`meta_batches`. ``cache``: keep the encoded split in Ray's object store
    (default: if small, see :func:`_cached_blocks`); it is read when this function is called.
    ``shard=(rank, world)``: only that rank's share of every epoch's rows (see
    :func:`_decode_slices`; all ranks get equally many), for a rank that executes its own
    dataset; needs the cached split (:func:`rank_streams_available`).
    """
    import ray.data

    counts = group_counts(data_root, domains, split)
    smallest = min(counts.values())
    quota = {g: min(n, math.ceil(KEEP_MARGIN * smallest)) for g, n in counts.items()}
    # one decode task per TASK_BYTES of decoded rows and epoch (a task costs Ray ~10-30 ms: a
    # few long ones; each hands out BLOCK_ROWS rows at a time), or one per CPU of the cluster
    # if that is more, as long as a task gets MIN_TASK_ROWS rows
    rows = sum(quota.values())
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    by_bytes = round(rows * _row_bytes(spec) / TASK_BYTES)
    num_slices = int(min(256, max(1, by_bytes, min(cpus, rows // MIN_TASK_ROWS))))
    paths = _domain_paths(data_root, domains)
    refs = _cached_blocks(paths, domains, split, num_slices, cache)
    if shard is not None and refs is None:
        raise ValueError(f"training_dataset(shard={shard}) needs the cached split; {split!r} of {list(domains)} is not cached")
    if refs is None:  # Bernoulli subsample per block + Ray Data's all-to-all shuffle, every epoch
        keep = {g: m / counts[g] for g, m in quota.items()}
        ds = _read_encoded(paths, domains, split, num_slices)
        ds = ds.map_batches(_Subsample(keep, seed), batch_format="pyarrow", batch_size=None)
        ds = ds.random_shuffle(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
        return _decoded(ds, spec, augment=augment, seed=seed, keep_domain=False)
    decode = _decode_kwargs(spec, augment=augment, seed=seed, keep_domain=False)
    kwargs = dict(refs=refs, quota=quota, seed=seed, num_slices=num_slices, decode=decode, shard=shard or (0, 1))
    out = ray.data.range(num_slices, override_num_blocks=num_slices)
    out = out.map_batches(_decode_slices, fn_kwargs=kwargs, batch_size=None)
    out.context.execution_options.preserve_order = True  # slices in order: the same rows to the same rank
    return _block_target(out, spec)


def eval_dataset(
    data_root: str | Path, domains: Sequence[str], *, spec: InputSpec, split: str, cache: bool | None = None,
    shard: tuple[int, int] | None = None,
) -> "ray.data.Dataset":
    """Every row of ``split`` in ``domains``, decoded without augmentation.

    Columns as :func:`training_dataset` plus ``domain`` and ``attack_type`` (str). Video ids are
    unique within a domain: group frames by ``(domain, video_id)``. ``cache`` as in :func:`training_dataset`.
    ``shard=(rank, world)``: the cached blocks rank, rank + world, ... (the ranks' shares are
    disjoint and cover every row once; needs the cached split).
    """
    check_split(split)
    mans = read_manifests(data_root, domains)
    empty = [d for d, m in mans.items() if sum(class_counts(m, split)) == 0]
    if empty:
        raise DatasetFormatError(f"domain(s) {empty} have no rows in split {split!r} under {data_root}")
    rows = sum(sum(class_counts(m, split)) for m in mans.values())
    # several blocks even for small sets, so that a split across workers shares the decoding
    world = shard[1] if shard else 1
    num_blocks = int(min(256, max(2 * len(domains), world, rows // 256)))
    paths = _domain_paths(data_root, domains)
    refs = _cached_blocks(paths, domains, split, num_blocks, cache)
    if shard is not None:
        if refs is None:
            raise ValueError(f"eval_dataset(shard={shard}) needs the cached split; {split!r} of {list(domains)} is not cached")
        refs = refs[shard[0]::world]
    if refs is None:
        ds = _read_encoded(paths, domains, split, num_blocks)
    else:
        ds = _blocks_dataset(refs)
    return _decoded(ds, spec, augment=False, seed=0, keep_domain=True)
