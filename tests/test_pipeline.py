"""Ray Data pipelines: balanced meta batches, exact step counts, disjoint shards, exact-once eval."""

import hashlib
import json
import threading
from collections import Counter

import numpy as np
import pytest
import torch

from anrl_ray.data.batches import iter_eval_batches, meta_batches
from anrl_ray.data.format import DatasetFormatError, read_manifest
from anrl_ray.data.ingest import data_config, group_counts, steps_per_epoch
from anrl_ray.data.pipeline import binary_views, epoch_rows, eval_dataset, start_at_epoch, training_dataset
from anrl_ray.data.transforms import InputSpec
from anrl_ray.errors import UserError

SOURCES = ["O", "C", "I"]
SPEC = InputSpec(img_size=32, in_channels=6)


def _run_parallel(fns):
    """Run callables in threads (streaming-split consumers must run concurrently); re-raise errors."""
    out, errors = [None] * len(fns), []

    def wrap(i, fn):
        try:
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a consumer hung (deadlock?)"
    if errors:
        raise errors[0]
    return out


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.numpy().tobytes()).hexdigest()


# --------------------------------------------------------------------------- no Ray needed


def test_input_spec():
    assert InputSpec().depth_size == 32 and InputSpec(img_size=64).depth_size == 8
    with pytest.raises(ValueError):
        InputSpec(img_size=60)
    with pytest.raises(ValueError):
        InputSpec(in_channels=4)


def test_steps_per_epoch_from_manifests(tiny_data):
    counts = group_counts(tiny_data, SOURCES, "train")
    per_domain_min = [min(counts[(i, 0)], counts[(i, 1)]) for i in range(len(SOURCES))]
    for B, W in [(2, 1), (2, 2), (3, 2), (1000, 2)]:
        assert steps_per_epoch(tiny_data, SOURCES, batch_per_class=B, world_size=W) == max(1, min(per_domain_min) // (B * W))
    live = sum(read_manifest(f"{tiny_data}/O")["counts"]["train"]["live"].values())
    assert counts[(0, 0)] == live


def test_public_names_stay_importable_from_pipeline():
    import anrl_ray.data.pipeline as pipeline

    for name in ["InputSpec", "data_config", "eval_dataset", "group_counts", "rank_streams_available", "steps_per_epoch",
                 "training_dataset"]:
        assert getattr(pipeline, name) is not None and name in pipeline.__all__
    assert pipeline.meta_batches is meta_batches and pipeline.iter_eval_batches is iter_eval_batches  # lazily
    with pytest.raises(AttributeError, match="no_such_name"):
        pipeline.no_such_name


def test_importing_the_pipeline_does_not_import_torch():
    """Ray Data's task processes import the pipeline to decode; torch (~1 s, ~300 MB each) is for the consumers."""
    import subprocess
    import sys

    code = ("import sys; import anrl_ray.data.pipeline as p; print('torch' in sys.modules);"
            "from anrl_ray.data.pipeline import meta_batches; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_binary_views_are_the_bytes_without_copies():
    import pyarrow as pa

    values = [b"abc", None, b"", b"\x00\xffxyz", b"q"]
    for typ in (pa.binary(), pa.large_binary()):
        arr = pa.chunked_array([pa.array(values[:2], typ), pa.array([], typ), pa.array(values[2:], typ).slice(1)])
        views = binary_views(arr)
        assert [None if v is None else v.tobytes() for v in views] == values[:2] + values[3:]
        assert all(v is None or v.dtype == np.uint8 for v in views)
    big = pa.chunked_array([pa.array([b"x" * 1000] * 3)])
    assert np.shares_memory(binary_views(big)[1], np.frombuffer(big.chunks[0].buffers()[2], np.uint8))


def test_epoch_rows_exact_quotas_new_order_per_seed():
    dom = np.repeat([0, 0, 1, 1], [10, 30, 12, 40])
    lab = np.repeat([0, 1, 0, 1], [10, 30, 12, 40])
    quota = {(0, 0): 10, (0, 1): 13, (1, 0): 12, (1, 1): 13}
    a = epoch_rows(dom, lab, quota, np.random.default_rng([0, 0]))
    assert len(set(a.tolist())) == len(a) == 48
    assert Counter(zip(dom[a], lab[a])) == Counter(quota)
    assert np.array_equal(a, epoch_rows(dom, lab, quota, np.random.default_rng([0, 0])))  # same seed + epoch
    b = epoch_rows(dom, lab, quota, np.random.default_rng([0, 1]))  # next epoch: another subset, another order
    assert not np.array_equal(a, b) and set(a[lab[a] == 1]) != set(b[lab[b] == 1])
    first_half = Counter(dom[a[:24]])  # a global shuffle: both domains early in the epoch
    assert first_half[0] > 3 and first_half[1] > 3


def test_missing_domain_is_a_clear_user_error(tiny_data, tmp_path):
    with pytest.raises(UserError, match=r"domain 'X'.*not found.*found: C, I, M, O"):
        steps_per_epoch(tiny_data, ["O", "X"], batch_per_class=2, world_size=1)
    with pytest.raises(DatasetFormatError, match="domain 'X'"):
        training_dataset(tiny_data, ["X"], spec=SPEC)
    with pytest.raises(DatasetFormatError, match="domain 'O'"):
        eval_dataset(tmp_path, ["O"], spec=SPEC, split="test")
    with pytest.raises(DatasetFormatError, match="split 'val'"):
        eval_dataset(tiny_data, ["O"], spec=SPEC, split="val")


# --------------------------------------------------------------------------- real local Ray


@pytest.mark.integration
def test_meta_batches_layout_and_exact_step_count(tiny_data, ray_local):
    B = 2
    steps = steps_per_epoch(tiny_data, SOURCES, batch_per_class=B, world_size=1)
    it = training_dataset(tiny_data, SOURCES, spec=SPEC, seed=0).iterator()
    want_labels = torch.tensor(([0] * B + [1] * B) * len(SOURCES))
    want_domains = torch.tensor([d for d in range(len(SOURCES)) for _ in range(2 * B)])
    for epoch in range(2):
        stats = {}
        batches = list(meta_batches(it, num_domains=3, batch_per_class=B, steps=steps, seed=0, epoch=epoch, stats=stats))
        assert len(batches) == steps
        for b in batches:
            assert b["image"].shape == (6 * B, 6, 32, 32) and b["image"].dtype == torch.float32
            assert b["depth"].shape == (6 * B, 1, 4, 4)
            assert torch.equal(b["label"], want_labels) and torch.equal(b["domain_index"], want_domains)
            assert torch.all(b["depth"][b["label"] == 1] == 0)
            assert torch.all(b["depth"][b["label"] == 0].flatten(1).amax(1) > 0)
        assert stats["steps"] == steps and stats["used"] + stats["reused"] == steps * 6 * B
        assert stats["rows_seen"] >= steps * 6 * B


@pytest.mark.integration
def test_cached_epochs_repeat_bit_for_bit_in_a_resumed_run(tiny_data, ray_local):
    """Epoch k of a dataset = the first epoch of a new one whose execution index starts at k (a resumed run)."""

    def epoch(ds):
        blocks = list(ds.iter_batches(batch_size=None))  # one execution = one epoch
        assert all(b["image"].dtype == np.uint8 and len(b["label"]) <= 64 for b in blocks)  # normalised by consumers
        return [(str(v), _digest(torch.from_numpy(np.array(x))), int(y))
                for b in blocks for v, x, y in zip(b["video_id"], b["image"], b["label"])]

    ds = training_dataset(tiny_data, SOURCES, spec=SPEC, seed=3)
    epochs = [epoch(ds) for _ in range(3)]
    resumed = training_dataset(tiny_data, SOURCES, spec=SPEC, seed=3)
    start_at_epoch(resumed, 2)
    assert epoch(resumed) == epochs[2]
    assert epochs[0] != epochs[1] and {r[1] for r in epochs[0]} != {r[1] for r in epochs[1]}
    other_seed = training_dataset(tiny_data, SOURCES, spec=SPEC, seed=4)
    start_at_epoch(other_seed, 2)
    assert epoch(other_seed) != epochs[2]


@pytest.mark.integration
def test_more_steps_than_data_reuses_but_keeps_count(tiny_data, ray_local):
    it = training_dataset(tiny_data, ["M"], spec=SPEC, augment=False, cache=False).iterator()  # the streaming read path
    stats = {}
    n = sum(1 for _ in meta_batches(it, num_domains=1, batch_per_class=4, steps=12, seed=0, epoch=0, stats=stats))
    assert n == 12 and stats["reused"] > 0
    with pytest.raises(RuntimeError, match="no row of domain index 1 / live"):  # a group absent on this worker
        list(meta_batches(it, num_domains=2, batch_per_class=4, steps=2, seed=0, epoch=1))
    with pytest.raises(ValueError, match=">= 1"):
        next(meta_batches(it, num_domains=0, batch_per_class=4, steps=1, seed=0, epoch=0))


@pytest.mark.integration
def test_two_way_split_disjoint_and_equal_steps(tiny_data, ray_local):
    B, W = 2, 2
    steps = steps_per_epoch(tiny_data, SOURCES, batch_per_class=B, world_size=W)
    ds = training_dataset(tiny_data, SOURCES, spec=SPEC, augment=False, seed=1)
    shards = ds.streaming_split(W, equal=True)

    def consume(shard):
        def run():
            per_epoch = []
            for epoch in range(1):
                stats = {}
                batches = list(meta_batches(shard, num_domains=3, batch_per_class=B, steps=steps, seed=0, epoch=epoch,
                                            stats=stats))
                per_epoch.append((len(batches), {_digest(x) for b in batches for x in b["image"]}, stats))
            return per_epoch
        return run

    results = _run_parallel([consume(s) for s in shards])
    for epoch in range(1):
        (n0, seen0, st0), (n1, seen1, st1) = results[0][epoch], results[1][epoch]
        assert n0 == n1 == steps
        assert not seen0 & seen1, "a sample reached both workers in one epoch"
        assert st0["reused"] + st1["reused"] <= st0["used"] + st1["used"]  # reuse only covers a shortfall

    # the raw shards: every row on one worker only (ids + pixels), nothing lost beyond equal=True's trim
    shards = ds.streaming_split(W, equal=True)

    def rows(shard):
        return lambda: [(v, _digest(torch.from_numpy(np.array(x))))
                        for b in shard.iter_batches(batch_size=16, batch_format="numpy")
                        for v, x in zip(b["video_id"], b["image"])]

    r0, r1 = _run_parallel([rows(s) for s in shards])
    assert not set(r0) & set(r1) and len(set(r0)) == len(r0) and len(set(r1)) == len(r1)
    assert abs(len(r0) - len(r1)) <= 0  # equal=True


@pytest.mark.integration
def test_eval_covers_every_sample_exactly_once(tiny_data, ray_local):
    domains = ["O", "C"]
    manifest_rows = {d: sum(n for cls in read_manifest(f"{tiny_data}/{d}")["counts"]["test"].values() for n in cls.values())
                     for d in domains}
    ds = eval_dataset(tiny_data, domains, spec=SPEC, split="test")
    seen, attacks = Counter(), Counter()
    for b in iter_eval_batches(ds.iterator(), batch_size=7):  # 7: the last batch is a partial one
        assert b["image"].shape[1:] == (6, 32, 32) and b["label"].dtype == torch.int64
        assert len(b["video_id"]) == len(b["domain"]) == len(b["attack_type"]) == len(b["label"])
        assert [a == "live" for a in b["attack_type"]] == (b["label"] == 0).tolist()
        attacks.update(b["attack_type"])
        seen.update((d, _digest(x)) for d, x in zip(b["domain"], b["image"]))
    assert all(c == 1 for c in seen.values())
    assert Counter(d for d, _ in seen) == Counter(manifest_rows)
    want = Counter()
    for d in domains:
        for cls in read_manifest(f"{tiny_data}/{d}")["counts"]["test"].values():
            want.update(cls)
    assert attacks == want  # every row's attack type, as the manifests count them

    # split across 2 workers with data_config(): nothing dropped, nothing twice, even for an odd count
    odd = eval_dataset(tiny_data, ["O"], spec=SPEC, split="test").limit(manifest_rows["O"] - 1)
    cfg = data_config()
    per_worker = cfg.configure({"test": odd}, world_size=2, worker_handles=None, worker_node_ids=None)

    def count(it):
        return lambda: [v for b in iter_eval_batches(it, batch_size=5) for v in zip(b["video_id"], map(_digest, b["image"]))]

    a, b = _run_parallel([count(w["test"]) for w in per_worker])
    assert len(a) + len(b) == manifest_rows["O"] - 1 and not set(a) & set(b)


@pytest.mark.integration
def test_torch_trainer_two_workers_on_two_cpus(tiny_data, ray_local, tmp_path):
    """The real setting: Ray Train, 2 workers x 0.5 CPU, train + val + test shards, 2 epochs, no deadlock."""
    import ray.train
    from ray.train.torch import TorchTrainer

    B = 2
    steps = steps_per_epoch(tiny_data, SOURCES, batch_per_class=B, world_size=2)

    def loop(config):
        rank = ray.train.get_context().get_world_rank()
        train, test = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("test")
        log = []
        for epoch in range(2):
            n = sum(1 for _ in meta_batches(train, num_domains=3, batch_per_class=B, steps=steps, seed=0, epoch=epoch))
            m = sum(len(b["label"]) for b in iter_eval_batches(test, batch_size=8))
            log.append([n, m])
            ray.train.report({"epoch": epoch, "steps": n})
        (tmp_path / f"rank{rank}.json").write_text(json.dumps(log))

    trainer = TorchTrainer(
        loop,
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name="pipeline", storage_path=str(tmp_path)),
        datasets={"train": training_dataset(tiny_data, SOURCES, spec=SPEC),
                  "test": eval_dataset(tiny_data, ["M"], spec=SPEC, split="test")},
        dataset_config=data_config(),
    )
    result = trainer.fit()
    assert result.error is None
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    test_rows = sum(n for cls in read_manifest(f"{tiny_data}/M")["counts"]["test"].values() for n in cls.values())
    for epoch in range(2):
        assert logs[0][epoch][0] == logs[1][epoch][0] == steps  # same step count on both ranks
        assert logs[0][epoch][1] + logs[1][epoch][1] == test_rows  # every test row once per epoch


@pytest.mark.integration
def test_each_epoch_draws_a_new_subset_of_the_larger_groups(tiny_data, ray_local):
    ds = training_dataset(tiny_data, ["M"], spec=SPEC, augment=False, seed=0)  # M: live is the smallest group

    def epoch():
        out = {0: set(), 1: set()}
        for b in ds.iter_batches(batch_size=64, batch_format="numpy"):
            for y, x in zip(b["label"], b["image"]):
                out[int(y)].add(_digest(torch.from_numpy(np.array(x))))
        return out

    first, second = epoch(), epoch()
    live = sum(read_manifest(f"{tiny_data}/M")["counts"]["train"]["live"].values())
    assert len(first[0]) == len(second[0]) == live and first[0] == second[0]  # the smallest group: all of it
    assert first[1] != second[1]  # spoof (twice as many rows): a fresh random subset each epoch
    assert len(first[1]) < 2 * live


@pytest.mark.integration
def test_search_shares_the_encoded_splits_and_they_give_the_same_epochs(tiny_data, ray_local):
    """Inside a search the cached splits come from one actor (read once for every trial): the same
    object references each time, and the same decoded epochs as a split read by the trial itself."""
    import ray

    from anrl_ray.data.pipeline import SHARED_SPLITS_ACTOR, _cached_blocks, _domain_paths, share_encoded_splits

    def epoch(ds):
        return [(str(v), _digest(torch.from_numpy(np.array(x)))) for b in ds.iter_batches(batch_size=None)
                for v, x in zip(b["video_id"], b["image"])]

    alone = epoch(training_dataset(tiny_data, SOURCES, spec=SPEC, seed=3))
    alone_eval = sorted(epoch(eval_dataset(tiny_data, SOURCES, spec=SPEC, split="dev")))
    share_encoded_splits()
    try:
        paths = _domain_paths(tiny_data, SOURCES)
        first = _cached_blocks(paths, SOURCES, "train", 2, None)
        second = _cached_blocks(paths, SOURCES, "train", 2, None)
        assert first is not None and len(first) == 2 and first == second  # read once, lent twice
        assert epoch(training_dataset(tiny_data, SOURCES, spec=SPEC, seed=3)) == alone
        assert sorted(epoch(eval_dataset(tiny_data, SOURCES, spec=SPEC, split="dev"))) == alone_eval
    finally:
        ray.kill(ray.get_actor(SHARED_SPLITS_ACTOR))
