"""What one training step of the toy model regresses on, drawn on the device: batches of rendered videos and
their caption ids (:func:`training_batch`, :func:`caption_ids`), the training noise (:func:`training_noise`)
and the regression target (:func:`training_target`). All are jit-able; :mod:`.train` runs them inside its
compiled step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import world

NOISES = ("white", "pyramid")
PYRAMID_DISCOUNT = 0.8

# --------------------------------------------------------------------------------------- captions


def _word_ids(words: str) -> list[int]:
    return [world.VOCAB.index(w) for w in words.split()]


def _padded_table(phrases: list[list[int]], width: int) -> np.ndarray:
    """int32 [len(phrases), width]: each phrase's ids, padded with PAD."""
    return np.array([p + [world.PAD_ID] * (width - len(p)) for p in phrases], np.int32)


def _motion_words(motion: int) -> str:
    if motion == world.BOUNCING:
        return "bouncing"
    if motion == world.STATIC:
        return "standing still"
    return f"moving {world.MOTIONS[motion]}"


_MOTION_IDS = _padded_table([_word_ids(_motion_words(m)) for m in range(len(world.MOTIONS))], 2)  # [10, 2]
_BACKGROUND_IDS = _padded_table([_word_ids(b) for b in world.BACKGROUNDS], 3)  # [9, 3]
_TABLES = {name: np.array(_word_ids(" ".join(table)), np.int32)
           for name, table in (("size", world.SIZES), ("colour", world.COLOURS), ("shape", world.SHAPES))}


def caption_ids(attrs: world.Attributes) -> jax.Array:
    """int32 [B, CONTEXT_LENGTH]: ``world.encode(world.caption(attrs))`` computed on the device (jit-able).

    Each caption is laid out with fixed slots (words that a caption lacks are PAD), then its words are
    moved to the front in order; PAD is never a caption word, so what remains is the padding.
    """
    def word(name):
        return jnp.asarray(name if isinstance(name, int) else world.VOCAB.index(name), jnp.int32)

    b = attrs.background.shape[0]

    def column(token, present=True):
        return jnp.where(present, jnp.broadcast_to(token, (b,)), world.PAD_ID)[:, None]  # [B, 1]

    parts = [column(world.BOS_ID)]
    for k in range(world.MAX_OBJECTS):
        present = k < attrs.count  # [B]
        if k:
            parts.append(column(word("and"), present))
        parts.append(column(word("a"), present))
        for field in ("size", "colour", "shape"):
            parts.append(column(jnp.asarray(_TABLES[field])[getattr(attrs, field)[:, k]], present))
        parts.append(jnp.where(present[:, None], jnp.asarray(_MOTION_IDS)[attrs.motion[:, k]], world.PAD_ID))
    parts += [column(word("on")), column(word("a")), jnp.asarray(_BACKGROUND_IDS)[attrs.background],
              column(word("background")), column(world.EOS_ID)]
    slots = jnp.concatenate(parts, axis=1)  # [B, S]
    keep = slots != world.PAD_ID
    position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, world.CONTEXT_LENGTH)  # [B, S]; dropped: out of range
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], slots.shape)
    out = jnp.full((b, world.CONTEXT_LENGTH), world.PAD_ID, jnp.int32)
    return out.at[rows, position].set(slots, mode="drop")

# ------------------------------------------------------------------------------------------ batches


def training_batch(key: jax.Array, batch: int, caption_dropout: float, two_object_fraction: float):
    """(videos float32 [B, F, H, W, 3] in [-1, 1], token ids int32 [B, CONTEXT_LENGTH]) drawn from ``key``."""
    k_attrs, k_render, k_drop = jax.random.split(key, 3)
    attrs = world.train_attributes(k_attrs, batch, two_object_fraction=two_object_fraction)
    videos = world.render_batch(attrs, k_render) * 2.0 - 1.0  # [0, 1] -> [-1, 1]
    ids = caption_ids(attrs)
    empty = jnp.asarray(world.encode(""))  # [L]
    dropped = jax.random.uniform(k_drop, (batch,)) < caption_dropout
    return videos, jnp.where(dropped[:, None], empty, ids)

# ------------------------------------------------------------------------------------ noise and target


def training_noise(kind: str, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 ``shape`` [B, F, H, W, C] unit-variance noise: "white" (i.i.d. normal) or "pyramid" (per frame,
    i.i.d. normal draws at H/2^k x W/2^k for every k down to one pixel, repeated up to full size, weighted
    by ``PYRAMID_DISCOUNT``^k and normalised), which hides the low frequencies (where each frame's object
    position lies) at more timesteps than white noise does."""
    if kind == "white":
        return jax.random.normal(key, shape, jnp.float32)
    b, f, h, w, c = shape
    levels = int(np.log2(min(h, w))) + 1
    total, norm = jnp.zeros(shape, jnp.float32), 0.0
    for level, k in enumerate(jax.random.split(key, levels)):
        s = 2 ** level
        draw = jax.random.normal(k, (b, f, -(-h // s), -(-w // s), c), jnp.float32)
        up = jnp.repeat(jnp.repeat(draw, s, axis=2), s, axis=3)[:, :, :h, :w]  # [B, F, H, W, C]
        total = total + PYRAMID_DISCOUNT ** level * up
        norm += PYRAMID_DISCOUNT ** (2 * level)
    return total / np.sqrt(norm)


def training_target(prediction: str, schedule, videos: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """What the UNet regresses on, float32 like ``noise`` [B, F, H, W, C]: the noise for "epsilon", or
    v = √ᾱ_t·ε − √(1 − ᾱ_t)·x0 for "v_prediction" (which is −x0 where ᾱ_t = 0)."""
    if prediction == "epsilon":
        return noise
    a = schedule.alphas_cumprod[t].astype(jnp.float32).reshape((-1,) + (1,) * (noise.ndim - 1))  # [B, 1, 1, 1, 1]
    return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * videos.astype(jnp.float32)
