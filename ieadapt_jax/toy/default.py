"""The embedded default model: the toy text-to-video model shipped inside the package.

    components = ieadapt_jax.toy.load_default()        # AnimateDiffComponents, no download

The snapshot in ``ieadapt_jax/toy/shipped/`` is a toy-model snapshot like any other (see
:mod:`ieadapt_jax.toy.model`) and loads through the same loaders as real checkpoints. Its files' SHA-256
digests are pinned here: :func:`verify_default` checks them before loading, so a corrupted or swapped
file is an error that names it, never a silently different model. Retraining changes the digests: update
:data:`SHIPPED_SHA256` with ``python -m ieadapt_jax.toy export --out RUN --to ieadapt_jax/toy/shipped``
followed by :func:`digests` (the README's "Retraining the toy model" says how).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax.numpy as jnp

from ..loading import AnimateDiffComponents
from .model import ToySnapshotError, load_toy

DEFAULT_MODEL = Path(__file__).resolve().parent / "shipped"

# relative path -> SHA-256 of the shipped snapshot's files (run 4: benchmarks/README.md#the-shipped-toy-models-lineage)
SHIPPED_SHA256: dict[str, str] = {
    "model_index.json": "c3d98e17a567882465445f582224b52bfd70df6e6194e55e1d8e9b4754b705fa",
    "scheduler/scheduler_config.json": "aa2a351e3afe0602a88df87396091840cbfdc3684ff05915f126b9303f59697a",
    "text_encoder/config.json": "be762238f39045baaf8a2a1d8410e449e01de68b044f45e40b46891c49a3bcbc",
    "text_encoder/model.safetensors": "437ea5623669e89ba464383a453f873d69472bc92660f2a8db0238a9a570e4eb",
    "tokenizer/vocab.json": "d76d032f55607d053e845bbe9d2adb2293758fece35a35fc4e5b00e3bf59cc84",
    "toy.json": "8d3317d7b925cee5f409926f79d3103985b35456605b95e1a936c41246e8b4e6",
    "unet/config.json": "bd6ab8868551ed3ec9b5a1d959134b072db95d9b5fbc06cbffc062e9a6b57584",
    "unet/diffusion_pytorch_model.safetensors": "62c36014c5f2a6f51e56e6678ebf0ed13f747719a83236bd7ee9ca8c947f10e3",
}


def digests(path: str | os.PathLike = DEFAULT_MODEL) -> dict[str, str]:
    """SHA-256 of every file of a snapshot folder, by path relative to it (sorted)."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def verify_default(path: str | os.PathLike = DEFAULT_MODEL) -> None:
    """Check that the shipped snapshot's files are exactly the pinned ones.

    Raises:
      ToySnapshotError: a file is missing, extra, or has another digest (named in the message).
    """
    found = digests(path) if Path(path).is_dir() else {}
    if not found:
        raise ToySnapshotError(f"the shipped toy model is missing: {path} holds no files (reinstall ieadapt-jax)")
    for name in sorted(set(SHIPPED_SHA256) | set(found)):
        if name not in found:
            raise ToySnapshotError(f"shipped toy model: {Path(path) / name} is missing")
        if name not in SHIPPED_SHA256:
            raise ToySnapshotError(f"shipped toy model: {Path(path) / name} is not part of the pinned snapshot")
        if found[name] != SHIPPED_SHA256[name]:
            raise ToySnapshotError(f"shipped toy model: {Path(path) / name} has SHA-256 {found[name]}, the code "
                                   f"expects {SHIPPED_SHA256[name]} (a corrupted file or an unpinned retrain)")


def load_default(dtype=jnp.float32, *, cache: bool = True) -> AnimateDiffComponents:
    """The shipped toy model as pipeline components, after :func:`verify_default`."""
    verify_default()
    return load_toy(DEFAULT_MODEL, dtype=dtype, cache=cache)
