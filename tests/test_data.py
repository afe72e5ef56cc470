"""Tests for nlora_linalg.pipeline.data on the real data files (installed packages and the cached evals wheel)."""

import dataclasses
import zipfile
from collections import Counter

import pytest

from nlora_linalg.pipeline.assets import MissingAssetError
from nlora_linalg.pipeline.data import (
    DATASETS,
    EVALS_WHEEL,
    DataConfig,
    Example,
    evals_wheel_path,
    load_arithmetic,
    load_dataset,
    load_sarcasm,
    split_hash,
)

# name → (task_type, label_names, unique examples after cleaning, label counts or None for generation)
EXPECTED = {
    "rotten_tomatoes": ("classification", ("rotten", "fresh"), 12_751, {0: 5_383, 1: 7_368}),
    "tweets": ("classification", ("negative", "neutral", "positive"), 37_154, {0: 15_952, 1: 14_412, 2: 6_790}),
    "sarcasm": ("classification", ("not_sarcastic", "sarcastic"), 28_498, {0: 14_950, 1: 13_548}),
    "arithmetic": ("generation", (), 18_293, None),
}


@pytest.fixture(scope="module")
def loaded():
    """Every dataset loaded once with the default split (seed 0, val 1000, test 2000)."""
    return {name: load_dataset(DataConfig(name=name)) for name in DATASETS}


def _key(e: Example) -> str:
    return " ".join(e.text.split()).casefold()


def test_registry_covers_expected_datasets():
    assert sorted(DATASETS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_labels_and_metadata(loaded, name):
    ds = loaded[name]
    task_type, label_names, n_unique, label_counts = EXPECTED[name]
    assert (ds.name, ds.task_type, ds.label_names) == (name, task_type, label_names)
    assert (len(ds.test), len(ds.val)) == (2000, 1000)
    everything = ds.train + ds.val + ds.test
    assert len(everything) == n_unique
    if label_counts is None:
        assert all(isinstance(e.label, str) and e.label.lstrip("-").isdigit() for e in everything)
    else:
        assert dict(Counter(e.label for e in everything)) == label_counts
    assert all(isinstance(e.text, str) and e.text == " ".join(e.text.split()) and e.text for e in everything)
    assert ds.source and len(ds.split_hash) == 64


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_splits_disjoint_without_duplicate_texts(loaded, name):
    ds = loaded[name]
    keys = [_key(e) for e in ds.train + ds.val + ds.test]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_config_same_splits(loaded, name):
    again = load_dataset(DataConfig(name=name))
    assert again.split_hash == loaded[name].split_hash
    assert (again.train, again.val, again.test) == (loaded[name].train, loaded[name].val, loaded[name].test)


def test_other_seed_other_splits_same_examples(loaded):
    ds0 = loaded["rotten_tomatoes"]
    ds1 = load_dataset(DataConfig(name="rotten_tomatoes", seed=1))
    assert ds1.split_hash != ds0.split_hash
    assert set(ds1.test) != set(ds0.test)
    assert set(ds1.train + ds1.val + ds1.test) == set(ds0.train + ds0.val + ds0.test)


def test_train_size_and_max_chars():
    ds = load_dataset(DataConfig(name="sarcasm", seed=3, val_size=50, test_size=100, train_size=200, max_chars=60))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (200, 50, 100)
    assert all(len(e.text) <= 60 for e in ds.train + ds.val + ds.test)


def test_arithmetic_answers_are_exact(loaded):
    ds = loaded["arithmetic"]
    for e in ds.train + ds.val + ds.test:
        assert e.text.startswith("Calculate ") and e.text.endswith(".")
        expression = e.text[len("Calculate ") : -1]
        assert set(expression) <= set("0123456789+-*() ")  # only integers, + − ×: eval is exact and safe here
        assert str(eval(expression)) == e.label


def test_arithmetic_generator_is_seeded():
    assert load_arithmetic(size=30, seed=5) == load_arithmetic(size=30, seed=5)
    assert load_arithmetic(size=30, seed=5) != load_arithmetic(size=30, seed=6)
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        load_arithmetic(size=0)


def test_split_hash_tells_int_from_str_labels_and_split_boundaries():
    a, b = Example("x", 1), Example("x", "1")
    assert split_hash([a], [], []) != split_hash([b], [], [])
    assert split_hash([a], [], []) != split_hash([], [a], [])


def test_results_are_frozen(loaded):
    ds = loaded["rotten_tomatoes"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.train[0].label = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    assert isinstance(ds.train, tuple)


# ---------------------------------------------------------------- bad inputs


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="DataConfig.name must be one of") as info:
        DataConfig(name="imdb")
    for name in DATASETS:
        assert name in str(info.value)
    assert "'imdb'" in str(info.value)


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("val_size", 0, ValueError, "DataConfig.val_size must be >= 1, got 0"),
        ("test_size", -5, ValueError, "DataConfig.test_size must be >= 1, got -5"),
        ("train_size", 0, ValueError, "DataConfig.train_size must be >= 1, got 0"),
        ("max_chars", 0, ValueError, "DataConfig.max_chars must be >= 1, got 0"),
        ("seed", -1, ValueError, "DataConfig.seed must be >= 0, got -1"),
        ("val_size", 10.0, TypeError, "DataConfig.val_size must be an int, got float 10.0"),
        ("seed", True, TypeError, "DataConfig.seed must be an int, got bool True"),
    ],
)
def test_config_rejects_bad_values(field, value, error, message):
    with pytest.raises(error, match=message):
        DataConfig(**{field: value})


def test_sizes_beyond_data_say_how_many_there_are():
    with pytest.raises(ValueError, match="= 13000 exceed the 12751 unique examples of dataset 'rotten_tomatoes'"):
        load_dataset(DataConfig(name="rotten_tomatoes", test_size=2_000, val_size=1_000, train_size=10_000))
    with pytest.raises(ValueError, match=r"train_size=at least 1 = 12752 exceed the 12751"):
        load_dataset(DataConfig(name="rotten_tomatoes", test_size=11_751, val_size=1_000))
    with pytest.raises(ValueError, match="no longer than max_chars=20"):
        load_dataset(DataConfig(name="rotten_tomatoes", max_chars=20))


def test_load_dataset_rejects_non_config():
    with pytest.raises(TypeError, match="config must be a DataConfig, got dict"):
        load_dataset({"name": "tweets"})


def test_missing_wheel_names_pip_download_command(tmp_path):
    command = f"pip download --no-deps evals==3.0.1.post1 -d {tmp_path.resolve() / 'wheels'}"
    with pytest.raises(MissingAssetError) as info:
        evals_wheel_path(tmp_path)
    assert command in str(info.value)
    with pytest.raises(MissingAssetError, match="pip download --no-deps evals==3.0.1.post1"):
        load_sarcasm(cache_dir=tmp_path)


def test_damaged_wheel_names_pip_download_command(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / EVALS_WHEEL).write_bytes(b"not a zip")
    with pytest.raises(MissingAssetError, match="damaged.*pip download --no-deps evals==3.0.1.post1"):
        load_sarcasm(cache_dir=tmp_path)
    with zipfile.ZipFile(tmp_path / "wheels" / EVALS_WHEEL, "w") as z:
        z.writestr("evals/other.txt", "x")
    with pytest.raises(MissingAssetError, match="lacks evals/registry/data/sarcasm/samples.jsonl"):
        load_sarcasm(cache_dir=tmp_path)
