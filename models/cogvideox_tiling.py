"""How the CogVideoX VAE (:mod:`.cogvideox_vae`) runs over long and large videos, as diffusers 0.42.1 does.

- :func:`over_frame_chunks`: a ``step(chunk, cache) -> (out, cache)`` over diffusers' frame chunks (the first
  chunk takes the remainder too), the equal-sized rest in one ``lax.scan`` carrying the conv cache.
- :func:`over_tiles` with :class:`Tiling` (diffusers' ``enable_tiling``): overlapping spatial tiles, tiles of
  one shape through one ``lax.map``, outputs blended linearly over the overlap in diffusers' order;
  :func:`check_seamless` refuses tile sizes whose joined output would have the wrong size.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Spatial tiling as diffusers' ``enable_tiling``: tiles of ``sample_height`` × ``sample_width`` pixels
    (latent tiles: those divided by the VAE factor) advancing by (1 − overlap) of a tile, blended over
    ``overlap`` of a tile. Videos no larger than one tile are not tiled."""

    sample_height: int
    sample_width: int
    overlap_height: float = 1 / 6
    overlap_width: float = 1 / 5

    def __post_init__(self):
        if self.sample_height < 1 or self.sample_width < 1:
            raise ValueError(f"tile size must be positive, got {self.sample_height}x{self.sample_width}")
        if not (0 <= self.overlap_height < 1 and 0 <= self.overlap_width < 1):
            raise ValueError(f"tile overlaps must be in [0, 1), got {self.overlap_height}, {self.overlap_width}")


def over_frame_chunks(step: Callable, x: jax.Array, frame_batch: int) -> jax.Array:
    """``step(chunk, cache) -> (out, cache)`` over x [B, T, ...] in diffusers' frame chunks, outputs joined in time.

    Chunks: the first takes ``frame_batch + T % frame_batch`` frames (all T when T < frame_batch), the rest
    ``frame_batch`` each. The first runs with cache None; the rest run in one ``lax.scan`` carrying the cache.
    """
    b, frames = x.shape[:2]
    count = max(frames // frame_batch, 1)
    first = min(frame_batch + frames % frame_batch, frames)
    out, cache = step(x[:, :first], None)
    if count == 1:
        return out
    rest = x[:, first:].reshape((b, count - 1, frame_batch) + x.shape[2:]).swapaxes(0, 1)  # [n−1, B, fb, ...]

    def body(carry, chunk):
        chunk_out, carry = step(chunk, carry)
        return carry, chunk_out

    _, outs = jax.lax.scan(body, cache, rest)  # [n−1, B, T', ...]
    outs = outs.swapaxes(0, 1).reshape((b, -1) + outs.shape[3:])  # [B, (n−1)·T', ...]
    return jnp.concatenate([out, outs], axis=1)


def _blend(a: jax.Array, b: jax.Array, extent: int, axis: int) -> jax.Array:
    """diffusers' blend_v / blend_h: b's first ``extent`` rows (along ``axis``) faded in from a's last ones."""
    extent = min(a.shape[axis], b.shape[axis], extent)
    if extent <= 0:
        return b
    shape = [1] * b.ndim
    shape[axis] = extent
    w = jnp.asarray((np.arange(extent) / extent).astype(np.float32).reshape(shape), b.dtype)
    head = jax.lax.slice_in_dim(a, a.shape[axis] - extent, a.shape[axis], axis=axis) * (1 - w)
    head = head + jax.lax.slice_in_dim(b, 0, extent, axis=axis) * w
    return jnp.concatenate([head, jax.lax.slice_in_dim(b, extent, b.shape[axis], axis=axis)], axis=axis)


def over_tiles(fn: Callable, x: jax.Array, tile: tuple[int, int], stride: tuple[int, int], blend: tuple[int, int],
               keep: tuple[int, int]) -> jax.Array:
    """fn over overlapping spatial tiles of x [B, T, H, W, C] (diffusers' tiled_encode / tiled_decode).

    Tiles of ``tile`` (h, w) input pixels start every ``stride``; tiles of one shape run together through
    ``lax.map`` (one compiled ``fn`` per shape, one tile in memory at a time). Then, in diffusers' order, each
    output tile is blended with its (already blended) upper and left neighbours over ``blend`` rows/columns,
    cropped to ``keep`` and joined.
    """
    height, width = x.shape[2:4]
    starts = [(i, j) for i in range(0, height, stride[0]) for j in range(0, width, stride[1])]
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, j in starts:
        by_shape.setdefault((min(tile[0], height - i), min(tile[1], width - j)), []).append((i, j))
    outputs = {}
    for (h, w), members in by_shape.items():
        if len(members) == 1:
            (i, j), = members
            outputs[(i, j)] = fn(x[:, :, i: i + h, j: j + w])
            continue
        tiles = jnp.stack([x[:, :, i: i + h, j: j + w] for i, j in members])  # [n, B, T, h, w, C]
        results = jax.lax.map(fn, tiles)  # [n, B, T', h', w', C']
        outputs.update({start: results[k] for k, start in enumerate(members)})
    rows = []
    for i in range(0, height, stride[0]):
        row = []
        for j in range(0, width, stride[1]):
            out = outputs[(i, j)]
            if rows:
                out = _blend(rows[-1][len(row)], out, blend[0], axis=2)
            if row:
                out = _blend(row[-1], out, blend[1], axis=3)
            row.append(out)
        rows.append(row)
    joined = [jnp.concatenate([t[:, :, : keep[0], : keep[1]] for t in row], axis=3) for row in rows]
    return jnp.concatenate(joined, axis=2)


def check_seamless(tiling: Tiling, what: str, advance: tuple[int, int], keep: tuple[int, int], unit: str) -> None:
    """Tiles must keep as much output as they advance, or the joined video has the wrong size (diffusers returns
    it silently); the defaults at CogVideoX's 480×720 are seamless."""
    if advance != keep:
        raise ValueError(
            f"{tiling} is not seamless for {what} with this VAE: tiles advance {advance} {unit} but keep {keep}, so "
            "the joined output would have the wrong size; pick tile sizes whose latent tile times (1 − overlap) is "
            "a whole number (e.g. the defaults of a 480x720 VAE: Tiling(240, 360))"
        )
