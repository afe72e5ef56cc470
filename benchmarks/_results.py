"""Shared by the benchmark scripts: write result rows to results/<name>/<timestamp>.csv (git-ignored)."""

from __future__ import annotations

import csv
import datetime
import pathlib


def write_csv(rows: list[dict], name: str) -> pathlib.Path:
    """Write ``rows`` (same keys) to results/<name>/<YYYYmmdd-HHMMSS>.csv and return the path."""
    path = pathlib.Path("results") / name / f"{datetime.datetime.now():%Y%m%d-%H%M%S}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
