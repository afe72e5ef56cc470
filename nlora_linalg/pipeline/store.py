"""Run store: every fine-tuning run keyed by a hash of its full config, so studies skip finished runs, resume
interrupted ones, and split their runs across processes or machines with ``shard``.

Layout: ``<root>/<key>/`` is the run's ``out_dir`` (config.json, metrics.jsonl, checkpoints/, summary.json).
A run is finished when its summary.json exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from dataclasses import dataclass
from typing import Sequence, TypeVar

from ..linalg.policy import ParameterError, fail
from .train import RunConfig, finetune

__all__ = ["config_key", "RunStore", "shard"]

T = TypeVar("T")


def config_key(config: RunConfig) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON of :meth:`RunConfig.identity` (``out_dir`` and
    the display-only ``train.progress`` excluded)."""
    text = json.dumps(config.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard(items: Sequence[T], spec: str | None) -> list[T]:
    """Items of shard ``"i/n"`` (0 <= i < n): every n-th item starting at i; None keeps all. The n shards
    partition ``items`` and each keeps the original order."""
    if spec is None:
        return list(items)
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise fail(ParameterError, "shard", "must look like 'i/n' with integers", repr(spec)) from None
    if not (n >= 1 and 0 <= i < n):
        raise fail(ParameterError, "shard", "must satisfy 0 <= i < n", repr(spec))
    return list(items)[i::n]


@dataclass(frozen=True, slots=True)
class RunStore:
    """Runs under ``root``, keyed by :func:`config_key`."""

    root: pathlib.Path

    def folder(self, config: RunConfig) -> pathlib.Path:
        return pathlib.Path(self.root) / config_key(config)

    def finished(self, config: RunConfig) -> bool:
        return (self.folder(config) / "summary.json").exists()

    def summary(self, config: RunConfig) -> dict:
        """The stored summary of a finished run (raises FileNotFoundError otherwise)."""
        return json.loads((self.folder(config) / "summary.json").read_text())

    def run(self, config: RunConfig) -> tuple[dict, bool]:
        """Return (summary, ran): the stored summary if finished, else run it (resuming from its newest
        checkpoint when an interrupted run left one) and store it."""
        if self.finished(config):
            return self.summary(config), False
        folder = self.folder(config)
        resume = (folder / "config.json").exists() and any((folder / "checkpoints").glob("step-*.pt"))
        result = finetune(dataclasses.replace(config, out_dir=str(folder)), resume=resume)
        return dataclasses.asdict(result), True
