"""A sweep's output folder: manifest, append-only results, baseline and kept videos.

    OUT/sweep.json          the manifest: definition, model fingerprint, site table, metrics, recorded sites
    OUT/results.jsonl       one JSON line per finished configuration, appended one chunk at a time
    OUT/baselines/*.npy     uint8 [F, H, W, 3] baseline video of each prompt and seed (the reference of metrics)
    OUT/videos/*.npy        uint8 thumbnails of the kept configurations' videos (the video grid)

**Atomicity.** A chunk's lines are appended with one ``write`` and ``fsync``; videos are written to a temporary
name and renamed. A kill therefore leaves whole lines plus at most one torn last line, which the next run
cuts off before appending. A configuration counts as done when its line is in the file (its videos were
written before the line), so a rerun skips exactly the finished ones and a kill loses at most the chunk in
flight. Only the writer process (process 0 of a multi-host run) writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.errors import IEAdaptError
from ..core.jsonfile import read_json_object

MANIFEST = "sweep.json"
RESULTS = "results.jsonl"
BASELINES = "baselines"
VIDEOS = "videos"
FORMAT = "ieadapt-sweep-1"


class SweepStoreError(IEAdaptError):
    """An output folder that holds another sweep, or a damaged results file."""


class ResultStore:
    """The output folder of one sweep (module docstring)."""

    def __init__(self, out: str | os.PathLike, manifest: dict, *, writer: bool = True):
        """Open ``out`` for the sweep described by ``manifest``: create it, or check that an existing one holds
        the same sweep (resume). ``writer=False`` (other processes of a multi-host run) only reads."""
        self.root = Path(out)
        self.writer = writer
        manifest = {"format": FORMAT, **manifest}
        file = self.root / MANIFEST
        if file.is_file():
            found = read_json_object(file, SweepStoreError)
            if _canonical(found) != _canonical(manifest):
                raise SweepStoreError(_difference(file, found, manifest))
        elif writer:
            self.root.mkdir(parents=True, exist_ok=True)
            existing = [p.name for p in self.root.iterdir()]
            if existing:
                raise SweepStoreError(f"{self.root} is not empty and holds no {MANIFEST} ({existing[:5]}); use a new folder")
            _atomic_write(file, (json.dumps(manifest, indent=1) + "\n").encode())
        else:
            raise SweepStoreError(f"{file} is missing (the writer process creates it first)")
        self.manifest = manifest
        if writer:
            (self.root / BASELINES).mkdir(exist_ok=True)
            (self.root / VIDEOS).mkdir(exist_ok=True)
            self._cut_torn_tail()

    @property
    def results_file(self) -> Path:
        return self.root / RESULTS

    def rows(self) -> list[dict]:
        """Every finished configuration's row, in the order written (a torn last line is ignored)."""
        return read_rows(self.root)

    def done(self) -> dict[str, dict]:
        """key -> row of every finished configuration."""
        return {row["key"]: row for row in self.rows()}

    def append(self, rows: Iterable[dict]) -> None:
        """Append rows as one write (then fsync): all of them land, or a torn tail the next run cuts."""
        payload = b"".join((json.dumps(row, allow_nan=True) + "\n").encode() for row in rows)
        if not payload or not self.writer:
            return
        fd = os.open(self.results_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_video(self, relative: str, video: np.ndarray) -> str:
        """Write uint8 ``video`` to ``OUT/relative`` (.npy) atomically; returns ``relative``."""
        if self.writer:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(video, np.uint8))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return relative

    def load_video(self, relative: str) -> np.ndarray:
        """A video written by :meth:`save_video`."""
        path = self.root / relative
        if not path.is_file():
            raise SweepStoreError(f"{path} is missing although results.jsonl lists it; the folder is damaged")
        return np.load(path)

    def _cut_torn_tail(self) -> None:
        if not self.results_file.is_file():
            return
        data = self.results_file.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self.results_file, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())


def baseline_path(prompt_index: int, seed: int) -> str:
    """Relative path of a baseline video."""
    return f"{BASELINES}/p{prompt_index:04d}_s{seed}.npy"


def video_path(index: int) -> str:
    """Relative path of a kept configuration's video thumbnail."""
    return f"{VIDEOS}/{index:06d}.npy"


def read_manifest(out: str | os.PathLike) -> dict:
    """The manifest of a sweep folder."""
    file = Path(out) / MANIFEST
    if not file.is_file():
        raise SweepStoreError(f"{out} is not a sweep folder: it has no {MANIFEST}")
    return read_json_object(file, SweepStoreError)


def read_rows(out: str | os.PathLike) -> list[dict]:
    """The finished configurations' rows of a sweep folder, in the order written (a torn last line is ignored)."""
    file = Path(out) / RESULTS
    if not file.is_file():
        return []
    complete = file.read_bytes().split(b"\n")[:-1]  # the part after the last newline is empty or torn
    out_rows = []
    for n, line in enumerate(complete, 1):
        try:
            out_rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SweepStoreError(f"{file} line {n} is not JSON ({e}); the file is damaged") from None
    return out_rows


def _canonical(manifest: dict) -> str:
    return json.dumps(manifest, sort_keys=True)


def _difference(file: Path, found: dict, wanted: dict) -> str:
    keys = sorted(set(found) | set(wanted))
    changed = [k for k in keys if _canonical({k: found.get(k)}) != _canonical({k: wanted.get(k)})]
    detail = []
    for k in changed:
        if isinstance(found.get(k), dict) and isinstance(wanted.get(k), dict):
            sub = sorted(f for f in set(found[k]) | set(wanted[k]) if found[k].get(f) != wanted[k].get(f))
            detail.append(f"{k} ({', '.join(sub)})")
        else:
            detail.append(k)
    return (f"{file} describes another sweep (differs in: {'; '.join(detail)}); resume with the same settings, "
            "or write to a new folder")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
