"""Masks for background preservation: a user's mask at latent resolution, or one found from source words.

The edit blends target latents with source latents after every step (:class:`ieadapt_jax.sampling.Blend`):
inside the mask (1) the target is kept, outside (0) the source is copied, so the background survives.

**Word-influence masks** (P2P LocalBlend-style). LocalBlend thresholds the cross-attention maps of chosen
words. The maps are never materialised here (docs/architecture.md#one-attend); instead the mask measures what the chosen words
contribute through cross-attention, per pixel: the source's clean latents are noised to early-step levels, and the
denoiser predicts ε (or v) twice, with the source prompt and with the chosen words' text states replaced by the
negative prompt's states at the same positions (text reaches a UNet only through cross-attention keys and
values, CogVideoX only through its text tokens in joint attention). |out_prompt − out_ablated|, averaged over channels and noise levels, is max-pooled over 3x3 pixels,
normalised by each frame's maximum and thresholded, as LocalBlend does with its maps (threshold 0.3); a
5x5 morphological closing then fills the small holes a thresholded object can have.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..schedulers import Schedule, add_noise, scale_model_input
from .presets import EditError

DEFAULT_THRESHOLD = 0.3
CLOSING = 5  # px: holes and gaps up to this size inside the thresholded mask are filled
# Fractions of the way through the denoising steps where ε is compared: early, where the words decide the layout
# (benchmarks/README.md#word-influence-mask-levels).
DEFAULT_LEVELS = (0.0, 0.1, 0.2)


def latent_mask(mask, latent_size: tuple[int, int]) -> np.ndarray:
    """float32 [F, h, w] in [0, 1]: a pixel mask [F, H, W] averaged over each latent cell (H = h·factor)."""
    mask = np.asarray(mask, np.float32)
    frames, height, width = mask.shape
    h, w = latent_size
    if height % h or width % w or height // h != width // w:
        raise EditError(f"a mask of {height}x{width} pixels does not tile the {h}x{w} latent grid evenly")
    factor = height // h
    return mask.reshape(frames, h, factor, w, factor).mean(axis=(2, 4))  # [F, h, w]


def word_positions(tokenizer, prompt: str, words: str) -> list[int]:
    """Token positions (in the prompt's padded ids) of every occurrence of each of ``words`` (space-separated).

    Raises:
        EditError: a word that does not occur in the prompt.
    """
    ids = list(tokenizer(prompt, truncation=False).input_ids)
    positions: list[int] = []
    for word in words.split():
        pieces = _word_pieces(tokenizer, word)
        found = [i for i in range(len(ids) - len(pieces) + 1) if pieces and ids[i:i + len(pieces)] == pieces]
        if not found:
            raise EditError(f"mask word {word!r} is not in the source prompt {prompt!r}; name words the prompt uses")
        for start in found:
            positions.extend(range(start, start + len(pieces)))
    return sorted(set(positions))


def _word_pieces(tokenizer, word: str) -> list[int]:
    """The ids of ``word`` without the markers the tokenizer adds to every text (those of the empty text: CLIP's
    begin and end markers, T5's end marker)."""
    ids = list(tokenizer(word, truncation=False).input_ids)
    markers = list(tokenizer("", truncation=False).input_ids)
    for k in range(len(markers) + 1):  # markers[:k] lead every text, markers[k:] end it
        head, tail = markers[:k], markers[k:]
        if len(ids) > len(markers) and ids[:k] == head and ids[len(ids) - len(tail):] == tail:
            return ids[k:len(ids) - len(tail)]
    return []


def ablate(text: jax.Array, uncond: jax.Array, positions: list[int]) -> jax.Array:
    """text [L, D] with the states at ``positions`` replaced by the negative prompt's ``uncond`` [L, D]."""
    keep = np.ones((text.shape[0], 1), np.float32)
    keep[positions] = 0.0
    return text * keep + uncond * (1.0 - keep)


def word_influence_mask(forward, state, schedule: Schedule, latents, text, ablated, *, seed: int = 0,
                        levels=DEFAULT_LEVELS, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """float32 [P, F, h, w] binary masks of where the ablated words act (module docstring).

    Args:
        forward, state: a jitted denoiser forward and its state (``models.make_forward``).
        schedule: the run's schedule (noise levels are its timesteps at ``levels`` of the way through).
        latents: [P, F, h, w, C] clean source latents.
        text, ablated: [P, L, D] the source prompts' states, and the same with the mask words ablated.
        seed: seeds the noise added to the latents.
        levels: fractions in [0, 1] of the step sequence at which ε is compared (averaged).
        threshold: in (0, 1]: a pixel is in the mask where the normalised influence reaches it.
    """
    if not 0.0 < threshold <= 1.0:
        raise EditError(f"the mask threshold must be in (0, 1], got {threshold}")
    x0 = jnp.asarray(latents, jnp.float32)
    pairs = x0.shape[0]
    rows_text = jnp.concatenate([jnp.asarray(text), jnp.asarray(ablated)])  # [2P, L, D]
    influence = 0.0
    for k, level in enumerate(levels):
        i = int(round(level * (schedule.num_steps - 1)))
        t = schedule.timesteps[i]
        noise = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), k), x0.shape, jnp.float32)
        x_t = scale_model_input(schedule, i, add_noise(schedule, x0, noise, jnp.broadcast_to(t, (pairs,))))
        eps, _ = forward(state, jnp.concatenate([x_t, x_t]), jnp.broadcast_to(t, (2 * pairs,)), rows_text)
        eps = eps.astype(jnp.float32)
        influence = influence + jnp.mean(jnp.abs(eps[:pairs] - eps[pairs:]), axis=-1)  # [P, F, h, w]
    pooled = jax.lax.reduce_window(influence, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 1, 1), "SAME")
    peak = jnp.max(pooled, axis=(2, 3), keepdims=True)  # [P, F, 1, 1]
    normalised = pooled / jnp.maximum(peak, 1e-12)
    return np.asarray(_close(normalised >= threshold), np.float32)


def _close(mask: jax.Array, size: int = CLOSING) -> jax.Array:
    """Morphological closing of bool masks [P, F, h, w] per frame (dilate, then erode, by a size x size square):
    fills holes and gaps narrower than ``size`` pixels without growing the mask's outline."""
    window, strides = (1, 1, size, size), (1, 1, 1, 1)
    grown = jax.lax.reduce_window(mask.astype(jnp.float32), 0.0, jax.lax.max, window, strides, "SAME")
    padded_min = jax.lax.reduce_window(grown, 1.0, jax.lax.min, window, strides, "SAME")
    return padded_min > 0.5
