"""The paper's weight-based metrics (:mod:`ieadapt_jax.scoring`) as sweep plug-ins.

:func:`register_sweep_metrics` loads a weights folder and registers what it can compute with the sweep's
metric registry (:mod:`.metrics`); :func:`sweep_metrics` builds the plug-ins themselves.
"""
from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp

from ..core.jit import merge, split
from ..scoring import (
    METRICS,
    MetricWeights,
    clip_frame_features,
    clip_score_from,
    clip_text_embeddings,
    dino_frame_features,
    full_precision,
    load_metric_weights,
    lpips_pixels,
    subject_consistency_from,
)
from .metrics import Metric as SweepMetric
from .metrics import register_metric


def _uint8(video: jax.Array) -> jax.Array:
    """A sweep video (float32 [F, H, W, 3] in [0, 1], from uint8 / 255) back to its uint8 values."""
    return jnp.round(jnp.clip(video, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def sweep_metrics(weights: MetricWeights) -> list:
    """The metrics ``weights`` can compute as :class:`ieadapt_jax.sweep.metrics.Metric` plug-ins.

    In a sweep every generated video is measured with its baseline (same prompt and seed):
    ``clip_score`` (against the sweep prompt), ``aesthetic_score`` and ``subject_consistency`` measure
    the video alone (the sweep adds ``<column>_shift``, the change from the baseline); ``lpips`` /
    ``lpips_vgg`` compare it with the baseline. ``clip_directional_similarity`` needs a source and a
    target prompt, which a perturbation sweep does not have, so it is not among them. The plug-ins
    carry their models (``weights=None``: nothing left for the sweep to find); ``compute`` is pure JAX
    on one video and runs inside the sweep's compiled measuring function.
    """

    available = set(weights.available)
    out = []

    def split_merge(model):
        structure, state = split(model)
        return (lambda s: merge(structure, s)), state

    if "clip_score" in available:
        merge_clip, clip_state = split_merge(weights.clip)

        def clip_setup(_, prompts):
            return {"clip": clip_state, "text": jnp.asarray(clip_text_embeddings(weights.clip, weights.tokenizer, prompts))}

        def clip_compute(state, video, baseline, prompt_index):
            image = clip_frame_features(merge_clip(state["clip"]), _uint8(video))  # [F, P]
            return {"clip_score": clip_score_from(image[None], state["text"][prompt_index][None])[0]}

        out.append(SweepMetric(
            "clip_score", ("clip_score",), full_precision(clip_compute), pairwise=False, setup=clip_setup,
            description=METRICS["clip_score"].description,
        ))
    if "aesthetic_score" in available:
        merge_clip, clip_state = split_merge(weights.clip)
        merge_head, head_state = split_merge(weights.aesthetic)

        def aesthetic_compute(state, video, baseline, prompt_index):
            image = clip_frame_features(merge_clip(state["clip"]), _uint8(video))  # [F, P]
            return {"aesthetic_score": jnp.mean(merge_head(state["head"])(image))}

        out.append(SweepMetric(
            "aesthetic_score", ("aesthetic_score",), full_precision(aesthetic_compute), pairwise=False,
            setup=lambda _, prompts: {"clip": clip_state, "head": head_state},
            description=METRICS["aesthetic_score"].description,
        ))
    if "subject_consistency" in available:
        merge_dino, dino_state = split_merge(weights.dino)

        def dino_compute(state, video, baseline, prompt_index):
            features = dino_frame_features(merge_dino(state), _uint8(video))  # [F, D]
            return {"subject_consistency": subject_consistency_from(features[None])[0]}

        out.append(SweepMetric(
            "subject_consistency", ("subject_consistency",), full_precision(dino_compute), pairwise=False,
            setup=lambda _, prompts: dino_state, description=METRICS["subject_consistency"].description,
        ))
    for name, net in (("lpips", "alex"), ("lpips_vgg", "vgg")):
        if name not in available:
            continue
        merge_lpips, lpips_state = split_merge(weights.lpips[net])

        def lpips_compute(state, video, baseline, prompt_index, name=name, merge_lpips=merge_lpips):
            lpips = merge_lpips(state)
            return {name: jnp.mean(lpips(lpips_pixels(_uint8(video)), lpips_pixels(_uint8(baseline))))}

        out.append(SweepMetric(
            name, (name,), full_precision(lpips_compute), pairwise=True, setup=lambda _, prompts, s=lpips_state: s,
            description=METRICS[name].description,
        ))
    return out


def register_sweep_metrics(folder: str | os.PathLike, *, log: Callable[[str], None] = print) -> MetricWeights:
    """Load ``folder`` (:func:`load_metric_weights`), log why metrics are skipped, and register the
    available ones with the sweep (:func:`sweep_metrics`, replacing earlier registrations)."""

    weights = load_metric_weights(folder)
    for message in weights.messages:
        log(message)
    for metric in sweep_metrics(weights):
        register_metric(metric, replace=True)
    return weights
