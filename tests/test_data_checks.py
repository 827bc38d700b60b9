"""Data checks before Ray starts (faults injected into a copy of the tiny data root); decode failures counted."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from anrl_ray.data import checks
from anrl_ray.data.checks import ChecksumCache, DecodeErrors, check_data_root, checksum_cache_path
from anrl_ray.data.format import ATTACK_TYPES, DatasetFormatError, file_sha256, read_manifest
from anrl_ray.data.pipeline import InputSpec, eval_dataset, iter_eval_batches, meta_batches, steps_per_epoch, training_dataset
from anrl_ray.errors import UserError

NEEDS = {"O": ["train", "dev"], "C": ["train", "dev"], "I": ["train", "dev"], "M": ["test"]}
SPEC = InputSpec(img_size=32, in_channels=6)


@pytest.fixture
def root(tiny_data, tmp_path, monkeypatch):
    """A private copy of the tiny data root, and a private checksum cache."""
    monkeypatch.setenv("ANRL_RAY_CACHE", str(tmp_path / "cache"))
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


@pytest.fixture
def hash_calls(monkeypatch):
    """Counts the shard hashing done by check_data_root."""
    calls = []

    def counting(path):
        calls.append(Path(path))
        return file_sha256(path)

    monkeypatch.setattr(checks, "file_sha256", counting)
    return calls


def _manifest(ddir: Path) -> dict:
    return json.loads((ddir / "manifest.json").read_text())


def _rewrite_shard(ddir: Path, edit) -> Path:
    """Rewrite the domain's first shard with ``edit(table)``; fix the manifest's rows, bytes and sha256."""
    m = _manifest(ddir)
    shard = m["shards"][0]
    path = ddir / shard["file"]
    table = pq.read_table(path)
    table = edit(table)
    pq.write_table(table, path, compression="zstd")
    shard.update(rows=table.num_rows, bytes=path.stat().st_size, sha256=file_sha256(path))
    (ddir / "manifest.json").write_text(json.dumps(m, indent=2))
    return path


def _flip_bytes(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    path.write_bytes(bytes(data))


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a new mtime even on coarse clocks


def _check(root: Path, **kw):
    return check_data_root(root, NEEDS, **kw)


# --------------------------------------------------------------------------- manifests and folders


def test_clean_root_passes_with_a_summary(root, hash_calls):
    s = _check(root)
    assert set(s["domains"]) == set(NEEDS)
    m = read_manifest(root / "O")
    assert s["domains"]["O"]["rows"]["dev"] == {"live": sum(m["counts"]["dev"]["live"].values()),
                                                "spoof": sum(m["counts"]["dev"]["spoof"].values())}
    assert s["domains"]["M"]["rows"].keys() == {"test"}
    n = sum(len(read_manifest(root / d)["shards"]) for d in NEEDS)
    assert s["shards_checked"] == s["hashed"] == len(hash_calls) == n and s["cache_hits"] == 0
    assert all(sh["bytes"] == (root / "O" / sh["file"]).stat().st_size for sh in m["shards"])  # DatasetWriter records sizes


def test_truncated_manifest(root):
    text = (root / "O" / "manifest.json").read_text()
    (root / "O" / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(DatasetFormatError, match=r"1 problem.*\n.*O/manifest.json is not valid JSON.*re-convert") as e:
        _check(root)
    assert isinstance(e.value, UserError)


def test_manifest_without_shards(root):
    m = _manifest(root / "C")
    del m["shards"]
    (root / "C" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetFormatError, match=r"C/manifest.json: missing key\(s\) 'shards'"):
        _check(root)
    with pytest.raises(DatasetFormatError, match="missing key"):  # not a KeyError any more
        read_manifest(root / "C")


def test_wrong_schema_version(root):
    m = _manifest(root / "I")
    m["schema_version"] = 99
    (root / "I" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetFormatError, match="I/manifest.json: schema_version 99"):
        _check(root)


def test_missing_domain_folder(root):
    shutil.rmtree(root / "C")
    with pytest.raises(DatasetFormatError, match=r"domain 'C': folder .*/C not found \(data root holds: I, M, O\)"):
        _check(root)
    with pytest.raises(DatasetFormatError, match="no such folder"):
        check_data_root(root / "nowhere", NEEDS)


def test_split_with_one_class_only(root):
    ddir = root / "O"
    drop = (pc.field("split") == "dev") & (pc.field("label") == 1)
    _rewrite_shard(ddir, lambda t: t.filter(~drop))
    m = _manifest(ddir)
    m["counts"]["dev"].pop("spoof")
    m["num_rows"] = sum(s["rows"] for s in m["shards"])
    (ddir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetFormatError) as e:
        _check(root)
    lines = str(e.value).splitlines()
    assert lines[0].endswith("1 problem(s) found before starting (nothing was run):") and len(lines) == 2
    assert "O/manifest.json: split 'dev' has 4 live and 0 spoof rows" in lines[1]
    check_data_root(root, {**NEEDS, "O": ["train"]})  # a run that does not need O/dev is fine


def test_flipped_bytes_fail_the_checksum(root):
    _flip_bytes(root / "M" / "part-00000.parquet")
    with pytest.raises(DatasetFormatError, match=r"M/part-00000.parquet: sha256 \w+\.\.\. differs .*damaged.*re-convert"):
        _check(root)
    _check(root, verify_checksums=False)  # same size: only the hash finds it


def test_truncated_shard_fails_the_size_check(root):
    path = root / "I" / "part-00000.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetFormatError, match=r"I/part-00000.parquet: \d+ bytes, .* says \d+ \(truncated"):
        _check(root, verify_checksums=False)
    # a manifest written before sizes were recorded: no size check, the checksum still catches it
    m = _manifest(root / "I")
    for s in m["shards"]:
        del s["bytes"]
    (root / "I" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetFormatError, match="I/part-00000.parquet: sha256"):
        _check(root)


def test_all_problems_reported_together(root):
    shutil.rmtree(root / "C")
    _flip_bytes(root / "O" / "part-00000.parquet")
    (root / "M" / "part-00000.parquet").unlink()
    with pytest.raises(DatasetFormatError) as e:
        _check(root)
    msg = str(e.value)
    assert msg.splitlines()[0].endswith("3 problem(s) found before starting (nothing was run):")
    assert "domain 'C'" in msg and "O/part-00000.parquet: sha256" in msg and "M/part-00000.parquet (listed in" in msg


# --------------------------------------------------------------------------- the checksum cache


def test_cache_hashes_once_and_again_after_a_change(root, hash_calls):
    n = _check(root)["hashed"]
    assert n == len(hash_calls) > 0 and checksum_cache_path().is_file()
    hash_calls.clear()
    s = _check(root)
    assert hash_calls == [] and s["hashed"] == 0 and s["cache_hits"] == n

    shard = root / "C" / "part-00000.parquet"
    good = shard.read_bytes()
    _flip_bytes(shard)
    _bump_mtime(shard)
    with pytest.raises(DatasetFormatError, match="C/part-00000.parquet: sha256"):
        _check(root)
    assert hash_calls == [shard.resolve()]  # only the changed file
    hash_calls.clear()
    with pytest.raises(DatasetFormatError, match="C/part-00000.parquet: sha256"):  # the bad verdict is cached too
        _check(root)
    assert hash_calls == []

    shard.write_bytes(good)
    _bump_mtime(shard)
    assert _check(root)["hashed"] == 1 and hash_calls == [shard.resolve()]
    hash_calls.clear()
    _bump_mtime(shard)  # touched, same bytes: hashed again, still fine
    assert _check(root)["hashed"] == 1


def test_damaged_or_unwritable_cache_is_not_fatal(root, hash_calls, tmp_path, monkeypatch):
    cache = checksum_cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_text('{"version": 1, "entries": {"/x": ')  # truncated
    _check(root)
    assert json.loads(cache.read_text())["version"] == 1  # rewritten whole
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("ANRL_RAY_CACHE", str(blocked))
    hash_calls.clear()
    assert _check(root)["hashed"] == len(hash_calls) > 0  # hashes, cannot save, goes on
    assert ChecksumCache().entries == {}


# --------------------------------------------------------------------------- decode failures


def test_decode_errors_tally():
    e = DecodeErrors(max_examples=2)
    for i in range(3):
        e.add(f"O/part-00000.parquet#{i}: bad")
    other = DecodeErrors()
    other.add("C/part-00001.parquet#5: bad")
    other.update(e)
    assert e.as_dict() == {"decode_failures": 3, "decode_failure_examples": ["O/part-00000.parquet#0: bad",
                                                                            "O/part-00000.parquet#1: bad"]}
    assert other.count == 4 and len(other.examples) == 3
    json.dumps(other.as_dict())


def _break_one_image(ddir: Path, split: str, label: int) -> int:
    """Replace one row's image with undecodable bytes (manifest checksums fixed); return its row index."""
    table = pq.read_table(ddir / "part-00000.parquet")
    rows = [i for i, (s, y) in enumerate(zip(table["split"].to_pylist(), table["label"].to_pylist())) if s == split and y == label]
    row = rows[len(rows) // 2]

    def edit(t):
        images = t["image"].to_pylist()
        images[row] = b"not an image"
        i = t.schema.get_field_index("image")
        return t.set_column(i, t.schema.field(i), pa.array(images, pa.binary()))

    _rewrite_shard(ddir, edit)
    return row


@pytest.mark.integration
def test_undecodable_image_is_counted_and_skipped(root, ray_local):
    test_row = _break_one_image(root / "M", "test", 1)
    check_data_root(root, {"M": ["test"]})  # the Parquet and its checksum are fine: only decoding fails
    total = sum(n for cls in read_manifest(root / "M")["counts"]["test"].values() for n in cls.values())

    errors = DecodeErrors()
    batches = list(iter_eval_batches(eval_dataset(root, ["M"], spec=SPEC, split="test").iterator(), batch_size=5,
                                     errors=errors))
    assert errors.count == 1 and errors.examples[0].startswith(f"M/part-00000.parquet#{test_row}: could not decode")
    assert sum(len(b["label"]) for b in batches) == total - 1
    for b in batches:
        assert len(b["attack_type"]) == len(b["label"]) and set(b["attack_type"]) <= set(ATTACK_TYPES)
        assert [a == "live" for a in b["attack_type"]] == (b["label"] == 0).tolist()
        assert b["image"].flatten(1).abs().amax(1).min() > 0  # no zero-filled placeholder delivered

    # training: a live row of M (the smallest group, so never subsampled away)
    train_row = _break_one_image(root / "M", "train", 0)
    steps = steps_per_epoch(root, ["M"], batch_per_class=2, world_size=1)
    it = training_dataset(root, ["M"], spec=SPEC, augment=False).iterator()
    errors, stats = DecodeErrors(), {}
    batches = list(meta_batches(it, num_domains=1, batch_per_class=2, steps=steps, seed=0, epoch=0, stats=stats,
                                errors=errors))
    assert len(batches) == steps and errors.count == 1 and stats["decode_failures"] == 1
    assert errors.examples[0].startswith(f"M/part-00000.parquet#{train_row}: could not decode")
    assert all(np.all(b["image"].flatten(1).abs().amax(1).numpy() > 0) for b in batches)
