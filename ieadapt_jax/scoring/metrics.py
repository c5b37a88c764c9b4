"""The paper's weight-based metrics as functions of their models, and the formulas on features.

Every metric takes uint8 videos ``[N, F, H, W, 3]`` (any size; frames are resized as the reference does,
:mod:`.preprocessing`) and returns one value per video, ``[N]`` float64:

| function | reference it reproduces |
|---|---|
| :func:`clip_score` | mean over frames of torchmetrics' CLIPScore of each frame: max(100 cos(image, prompt), 0) |
| :func:`clip_directional_similarity` | mean over frame pairs of cos(I_edit - I_source, T_target - T_source), features L2-normalised (diffusers' evaluation guide, StyleGAN-NADA) |
| :func:`aesthetic_score` | mean over frames of the LAION predictor on the L2-normalised CLIP image embedding (1-10) |
| :func:`subject_consistency` | VBench: DINO class-token features; per frame i >= 1, (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2; mean over frames |
| :func:`lpips_distance` | mean over frames of LPIPS v0.1 (AlexNet / VGG16) between each frame and the reference's |

Per-frame features (:func:`clip_frame_features`, :func:`dino_frame_features`) run as compiled functions of the
model (:func:`ieadapt_jax.core.jit.jit_method`) over fixed-size chunks of frames (:func:`per_frame`), with
float32 matmuls at full precision (:func:`full_precision`), as the PyTorch references compute. The ``*_from``
functions are the formulas on features, shared with the sweep's plug-ins
(:mod:`ieadapt_jax.sweep.weighted_metrics`).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core.jit import ModuleFunction, jit_method, split
from .errors import MetricError
from .preprocessing import clip_pixels, dino_pixels, lpips_pixels

DEFAULT_BATCH = 16
_NORM_EPS = 1e-12
_COS_EPS = 1e-8

# ------------------------------------------------------------------------------------------ features


def unit(x: jax.Array) -> jax.Array:
    """L2-normalise the last axis (torch's F.normalize: x / max(|x|, 1e-12))."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


def full_precision(fn: Callable) -> Callable:
    """``fn`` traced with float32 matmuls at full precision, as the PyTorch references compute (XLA
    may otherwise use TF32 / bf16 passes for float32 matmuls on GPUs)."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return traced


def clip_frame_features(clip, frames: jax.Array) -> jax.Array:
    """uint8 frames [M, H, W, 3] -> [M, P] L2-normalised CLIP image embeddings (traceable; :func:`clip_pixels`
    first)."""
    return unit(clip.get_image_features(clip_pixels(frames)))


def dino_frame_features(dino, frames: jax.Array) -> jax.Array:
    """uint8 frames [M, H, W, 3] -> [M, D] L2-normalised DINO class-token features (traceable; VBench's
    :func:`dino_pixels` first, DINO's own position-embedding interpolation for non-square frames)."""
    return unit(dino(dino_pixels(frames), pos_interpolation="dino").last_hidden_state[:, 0])


_clip_frames = jit_method(full_precision(clip_frame_features))
_dino_frames = jit_method(full_precision(dino_frame_features))


@jit_method
@full_precision
def _lpips_pairs(lpips, pairs: jax.Array) -> jax.Array:
    """uint8 frame pairs [M, 2, H, W, 3] -> [M] LPIPS between the two frames of each pair."""
    return lpips(lpips_pixels(pairs[:, 0]), lpips_pixels(pairs[:, 1]))


@jit_method
@full_precision
def _clip_text(clip, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Token ids and attention mask int32 [N, L] -> [N, P] L2-normalised CLIP text embeddings."""
    return unit(clip.get_text_features(ids, mask))


def per_frame(model, fn: ModuleFunction, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """``fn(model, chunk)`` over the leading axis of ``frames`` in chunks of ``batch_size``: [M, ...] -> [M, ...out].

    ``fn`` is a :func:`~ieadapt_jax.core.jit.jit_method` function; the model is split once and every chunk
    runs the same compiled function (the last chunk is padded by repeating its last entry, so all chunks
    have one shape).
    """
    if batch_size < 1:
        raise MetricError(f"batch_size must be >= 1, got {batch_size}")
    structure, state = split(model)
    outs = []
    for start in range(0, frames.shape[0], batch_size):
        chunk = frames[start : start + batch_size]
        pad = batch_size - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(fn.pure(structure, state, jnp.asarray(chunk)))[: batch_size - pad])
    return np.concatenate(outs)


def clip_image_embeddings(clip, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """[N, F, H, W, 3] uint8 -> [N, F, P] L2-normalised CLIP image embeddings."""
    videos = _videos(videos, "videos")
    N, F = videos.shape[:2]
    flat = videos.reshape(N * F, *videos.shape[2:])  # [N·F, H, W, 3]
    return per_frame(clip, _clip_frames, flat, batch_size).reshape(N, F, -1)


def clip_text_embeddings(clip, tokenizer, prompts: Sequence[str]) -> np.ndarray:
    """[N] prompts -> [N, P] L2-normalised CLIP text embeddings (padded to the text tower's length,
    truncated there as transformers' tokenizer does with ``truncation=True``)."""
    if tokenizer is None:
        raise MetricError("CLIP text embeddings need a tokenizer: the clip/ folder has no tokenizer files")
    length = clip.config.text.max_position_embeddings
    tokens = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="np")
    ids = jnp.asarray(tokens["input_ids"], jnp.int32)
    return np.asarray(_clip_text(clip, ids, jnp.asarray(tokens["attention_mask"], jnp.int32)))


def dino_features(dino, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """[N, F, H, W, 3] uint8 -> [N, F, D] L2-normalised DINO class-token features (VBench's)."""
    videos = _videos(videos, "videos")
    N, F = videos.shape[:2]
    flat = videos.reshape(N * F, *videos.shape[2:])  # [N·F, H, W, 3]
    return per_frame(dino, _dino_frames, flat, batch_size).reshape(N, F, -1)

# ------------------------------------------------------------------------------------------ metrics from features


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """torch's F.cosine_similarity over the last axis: a·b / max(|a| |b|, 1e-8)."""
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, _COS_EPS)


def clip_score_from(image: jax.Array, text: jax.Array) -> jax.Array:
    """image [N, F, P], text [N, P] (unit vectors) -> [N]: mean over frames of max(100 cos, 0)."""
    per_frame_score = 100.0 * jnp.einsum("nfp,np->nf", image, text)
    return jnp.mean(jnp.maximum(per_frame_score, 0.0), axis=1)


def directional_similarity_from(
    image: jax.Array, reference_image: jax.Array, text: jax.Array, reference_text: jax.Array
) -> jax.Array:
    """[N, F, P] edited / source image features, [N, P] target / source text features (unit vectors)
    -> [N]: mean over frames of cos(image - reference_image, text - reference_text)."""
    return jnp.mean(cosine(image - reference_image, (text - reference_text)[:, None]), axis=1)


def subject_consistency_from(features: jax.Array) -> jax.Array:
    """[N, F, D] unit DINO features -> [N]: VBench's mean over frames i >= 1 of
    (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2."""
    previous = jnp.maximum(cosine(features[:, 1:], features[:, :-1]), 0.0)  # [N, F-1]
    first = jnp.maximum(cosine(features[:, 1:], features[:, :1]), 0.0)
    return jnp.mean((previous + first) / 2.0, axis=1)

# ------------------------------------------------------------------------------------------ metrics


@full_precision
def clip_score(clip, tokenizer, videos, prompts: Sequence[str], *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """CLIP score [N] of videos [N, F, H, W, 3] uint8 against one prompt each (module table)."""
    image = clip_image_embeddings(clip, videos, batch_size=batch_size)
    text = clip_text_embeddings(clip, tokenizer, _prompts(prompts, image.shape[0], "prompts"))
    return np.asarray(clip_score_from(jnp.asarray(image), jnp.asarray(text)), np.float64)


@full_precision
def clip_directional_similarity(
    clip,
    tokenizer,
    videos,
    references,
    prompts: Sequence[str],
    reference_prompts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """CLIP directional similarity [N] of edited videos against their source videos (same frame
    count) and target / source prompts (module table)."""
    videos, references = _videos(videos, "videos"), _videos(references, "references")
    _check_paired(videos, references, same_size=False)
    n = videos.shape[0]
    image = clip_image_embeddings(clip, videos, batch_size=batch_size)
    reference_image = clip_image_embeddings(clip, references, batch_size=batch_size)
    text = clip_text_embeddings(clip, tokenizer, _prompts(prompts, n, "prompts"))
    reference_text = clip_text_embeddings(clip, tokenizer, _prompts(reference_prompts, n, "reference_prompts"))
    args = (image, reference_image, text, reference_text)
    return np.asarray(directional_similarity_from(*map(jnp.asarray, args)), np.float64)


@full_precision
def aesthetic_score(clip, head, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """LAION aesthetic score [N] (1-10 scale) of videos: the head on each frame's unit CLIP image
    embedding, averaged over frames."""
    image = clip_image_embeddings(clip, videos, batch_size=batch_size)
    return np.asarray(jnp.mean(head(jnp.asarray(image)), axis=1), np.float64)


@full_precision
def subject_consistency(dino, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """VBench subject consistency [N] of videos with at least two frames."""
    videos = _videos(videos, "videos")
    if videos.shape[1] < 2:
        raise MetricError(f"subject_consistency needs videos of >= 2 frames, got {videos.shape[1]}")
    return np.asarray(subject_consistency_from(jnp.asarray(dino_features(dino, videos, batch_size=batch_size))), np.float64)


@full_precision
def lpips_distance(lpips, videos, references, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """LPIPS [N]: mean over frames of LPIPS between each frame and the same frame of the reference
    (videos and references of equal shape)."""
    videos, references = _videos(videos, "videos"), _videos(references, "references")
    _check_paired(videos, references, same_size=True)
    N, F = videos.shape[:2]
    pairs = np.stack([videos, references], axis=2).reshape(N * F, 2, *videos.shape[2:])  # [N·F, 2, H, W, 3]
    return per_frame(lpips, _lpips_pairs, pairs, batch_size).reshape(N, F).mean(axis=1, dtype=np.float64)


def _videos(videos, name: str) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3 or 0 in videos.shape:
        raise MetricError(
            f"{name} must be uint8 RGB videos [N, F, H, W, 3] (one video: add a leading axis), got "
            f"{videos.dtype} {list(videos.shape)}"
        )
    return videos


def _check_paired(videos: np.ndarray, references: np.ndarray, *, same_size: bool) -> None:
    want = videos.shape if same_size else videos.shape[:2]
    got = references.shape if same_size else references.shape[:2]
    if want != got:
        what = "[N, F, H, W, 3]" if same_size else "[N, F]"
        raise MetricError(f"references must match videos in {what}: videos {list(videos.shape)}, references {list(references.shape)}")


def _prompts(prompts, n: int, name: str) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts] * n
    prompts = list(prompts)
    if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise MetricError(f"{name} must be one string or {n} strings (one per video), got {len(prompts)} items")
    return prompts
