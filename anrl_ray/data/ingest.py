"""What a trial needs to know before it streams data: manifest counts, the epoch length, and
how Ray Train splits the datasets between workers.

* :func:`group_counts` / :func:`steps_per_epoch`: rows per (domain, class) from the manifests
  (no Parquet is read) and the meta-learning steps per epoch derived from them.
* :func:`data_config`: a Ray Train ``DataConfig`` whose evaluation splits are exact-once.

Epoch definition (``steps_per_epoch``): ``n = min over source domains of min(#live, #spoof)``
in the split; ``steps = max(1, n // (B * world_size))``. The reference uses the *largest*
domain's count and cycles the smaller ones (index modulo length); here no sample is drawn twice
in an epoch except to cover sampling noise, so an epoch is shorter when domains differ in size
(it sees all of the smallest group and a fresh random subset of the others each epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from anrl_ray.data.format import SPLITS, DatasetFormatError, read_manifest

if TYPE_CHECKING:
    import ray.train


def read_manifests(data_root: str | Path, domains: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The manifest of every domain folder under ``data_root``, in ``domains`` order.

    Raises:
        DatasetFormatError: no domain, a repeated name, or a folder that is missing (the
            message lists the converted datasets that are there).
    """
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


def class_counts(manifest: dict[str, Any], split: str) -> tuple[int, int]:
    """``(#live, #spoof)`` rows of ``split`` in one dataset's manifest."""
    per = manifest["counts"].get(split, {})
    return sum(per.get("live", {}).values()), sum(per.get("spoof", {}).values())


def check_split(split: str) -> None:
    """Raise DatasetFormatError unless ``split`` is one of ``format.SPLITS``."""
    if split not in SPLITS:
        raise DatasetFormatError(f"split {split!r}: must be one of {', '.join(SPLITS)}")


def group_counts(data_root: str | Path, domains: Sequence[str], split: str) -> dict[tuple[int, int], int]:
    """Rows per (domain index, label) in ``split``, from the manifests; every group must be non-empty."""
    check_split(split)
    counts = {}
    for i, (d, m) in enumerate(read_manifests(data_root, domains).items()):
        live, spoof = class_counts(m, split)
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
