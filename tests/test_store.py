"""Run store and sharding (groundwork of issue #5): hash keys, skip finished runs, resume, partition."""

from __future__ import annotations

import dataclasses

import pytest

from nlora_linalg.linalg.policy import ParameterError
from nlora_linalg.pipeline.cli import parse_args
from nlora_linalg.pipeline.store import RunStore, config_key, shard

TINY = ["--model", "minilm", "--task", "rotten_tomatoes", "--init", "nlora", "--rank", "2", "--batch-size", "4",
        "--max-length", "24", "--val-size", "8", "--test-size", "8", "--train-size", "40", "--eval-size", "8",
        "--eval-every", "0", "--no-zero-shot", "--no-progress", "--steps", "2", "--device", "cpu"]


def test_key_ignores_out_dir_and_changes_with_any_field():
    """The key is a function of the config alone: out_dir does not matter, every other field does."""
    a, _ = parse_args(TINY)
    assert config_key(a) == config_key(dataclasses.replace(a, out_dir="elsewhere"))
    b, _ = parse_args([*TINY, "--lr", "2e-3"])
    c, _ = parse_args([*TINY, "--seed", "1"])
    assert len({config_key(a), config_key(b), config_key(c)}) == 3


def test_key_ignores_progress_display_only():
    """Showing progress bars changes nothing computed, so a run stored without bars is reused with them (a study
    re-run interactively must not redo a background run)."""
    a, _ = parse_args(TINY)
    shown = dataclasses.replace(a, train=dataclasses.replace(a.train, progress=not a.train.progress))
    assert config_key(a) == config_key(shown) and a.identity() == shown.identity()
    assert a.to_json() != shown.to_json()  # the saved config.json still records it


def test_finished_runs_are_not_rerun(tmp_path):
    """A second store.run of the same config returns the stored summary without training again."""
    store = RunStore(tmp_path)
    config, _ = parse_args(TINY)
    first, ran = store.run(config)
    assert ran and store.finished(config)
    stamp = (store.folder(config) / "summary.json").stat().st_mtime_ns
    second, ran_again = store.run(config)
    assert not ran_again and second["losses"] == list(first["losses"])
    assert (store.folder(config) / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_runs(n):
    """The n shards are disjoint, cover every item and keep the order."""
    items = list(range(11))
    parts = [shard(items, f"{i}/{n}") for i in range(n)]
    assert sorted(x for p in parts for x in p) == items
    assert all(p == sorted(p) for p in parts)


@pytest.mark.parametrize("spec", ["2/2", "-1/3", "a/b", "1", "0/0"])
def test_bad_shard_spec_names_the_argument(spec):
    """A malformed or out-of-range shard raises ParameterError naming 'shard' and the value."""
    with pytest.raises(ParameterError, match="shard"):
        shard([1, 2, 3], spec)
