"""Measurement helpers shared by the GPU benchmark scripts (timing, numerical agreement, result files)."""
from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np


def median_seconds(fn, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` (which must block until its work is done) after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def errors(ours: np.ndarray, reference: np.ndarray) -> dict:
    """Max and mean abs error, and relative error = max abs error / max |reference|."""
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    scale = float(np.abs(reference).max())
    return dict(max_abs=float(diff.max()), mean_abs=float(diff.mean()), relative=float(diff.max() / scale), ref_max_abs=scale)


def write_json(path: str, result: dict) -> None:
    """Write ``result`` to ``path`` whole (a temporary file renamed into place), creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(path + ".tmp", path)
