"""Per-video metrics of a sweep, and the plug-in registry that weight-based metrics join.

A :class:`Metric` measures one generated video, alone or against its baseline (the unperturbed video of
the same prompt and seed). Its ``compute`` is traced: the sweep runs it inside one compiled, sharded
function over a whole chunk of videos, so videos never leave the device. Metrics that need weights (CLIP,
LPIPS, DINO, aesthetic) name the file or folder they load from, relative to the ``--metrics-weights``
folder; ``setup`` loads them once on the host.

    register_metric(Metric(
        name="clip_score", columns=("clip_score",), pairwise=False, weights="clip-vit-l-14",
        setup=lambda weights, prompts: {"params": load_clip(weights), "text": encode(prompts)},
        compute=lambda state, video, baseline, prompt: {"clip_score": score(state, video, prompt)},
        description="CLIP ViT-L/14 image-text similarity, mean over frames"))

Then ``python -m ieadapt_jax.sweep run --metrics-weights DIR --metrics-plugin my.module ...`` imports
``my.module`` (which calls :func:`register_metric`) and measures ``clip_score`` when ``DIR/clip-vit-l-14``
exists; a missing weight path skips the metric with a message, it is never estimated.

The paper's weight-based metrics are such plug-ins already: given ``--metrics-weights DIR`` (the folder layout
of :mod:`ieadapt_jax.scoring`), the sweep registers ``clip_score``, ``aesthetic_score`` and
``subject_consistency`` (a video alone, so with ``_shift`` columns) and ``lpips`` / ``lpips_vgg`` (against the
baseline) for the weights the folder holds (:func:`ieadapt_jax.sweep.weighted_metrics.register_sweep_metrics`).

Built-in, weight-free (``video``/``baseline`` float32 [F, H, W, 3] in [0, 1]):

| metric | columns | definition |
| --- | --- | --- |
| ssim | ssim | SSIM (dm-pix, 11x11 Gaussian window, σ 1.5) of each frame with the baseline's, mean over frames |
| psnr | psnr | PSNR in dB (dm-pix, peak 1) of each frame with the baseline's, mean over frames (inf if equal) |
| temporal_consistency | temporal_consistency | SSIM between consecutive frames, mean over the F−1 pairs |
| flicker | flicker | mean absolute second temporal difference, ``|f[t+1] − 2 f[t] + f[t−1]|`` |
| motion | motion | mean absolute first temporal difference, ``|f[t+1] − f[t]|`` |

Toy-world metrics (:mod:`ieadapt_jax.toy.metrics`; on toy models): ``toy_attributes`` (whether the colour,
shape, size and motion read from the pixels match the caption's first object: 1 or 0, and 0 when the video has
no object), ``toy_structure`` (object-mask IoU, centroid error in px, background PSNR and object hue shift in
degrees against the baseline; centroid error and hue shift are NaN unless both videos have an object),
``toy_dynamics`` (path length of the object's centroid in px; background flicker). Columns of metrics that
measure a video alone also get a ``<column>_shift`` (value − the baseline's value) in the results table.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..scoring import MetricError
from ..toy import metrics as toy
from ..toy import world


@dataclasses.dataclass(frozen=True)
class Metric:
    """One per-video measurement (module docstring).

    Fields:
        name: registry name (what ``--metrics`` lists).
        columns: names of the scalar values ``compute`` returns (results-table columns; unique across metrics).
        compute: ``(state, video, baseline, prompt_index) -> {column: scalar}``, traced (jit/vmap-safe).
            ``video`` and ``baseline``: float32 [F, H, W, 3] in [0, 1]; ``prompt_index``: int32 [] into the
            sweep's prompts; ``state``: what ``setup`` returned (device arrays).
        pairwise: True if it compares with the baseline (then no ``_shift`` column is derived).
        setup: ``(weights_path or None, prompts) -> state`` pytree, run once on the host (load weights, encode
            prompts); None for no state.
        weights: path relative to the ``--metrics-weights`` folder that ``setup`` loads (file or folder), or None.
        models: "any", or "toy" for metrics that read toy-world videos.
        description: one line for ``--help`` and the summary.
    """

    name: str
    columns: tuple[str, ...]
    compute: Callable[..., dict]
    pairwise: bool
    setup: Callable[[Path | None, Sequence[str]], Any] | None = None
    weights: str | None = None
    models: str = "any"
    description: str = ""

    def __post_init__(self):
        if not self.name or not self.columns:
            raise MetricError("a metric needs a name and at least one column")
        if self.models not in ("any", "toy"):
            raise MetricError(f"metric {self.name!r}: models must be 'any' or 'toy', got {self.models!r}")


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the registry (``replace=True`` overrides one of the same name); returns it."""
    if not isinstance(metric, Metric):
        raise MetricError(f"register_metric takes a Metric, got {type(metric).__name__}")
    if metric.name in METRICS and not replace:
        raise MetricError(f"metric {metric.name!r} is already registered (pass replace=True to override it)")
    taken = {c: m.name for m in METRICS.values() if m.name != metric.name for c in m.columns}
    clash = [c for c in metric.columns if c in taken]
    if clash:
        raise MetricError(f"metric {metric.name!r}: columns {clash} already belong to {sorted({taken[c] for c in clash})}")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name lists the registered ones."""
    if name not in METRICS:
        raise MetricError(f"unknown metric {name!r}; registered: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register metrics (``--metrics-plugin``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise MetricError(f"metrics plug-in {module!r} cannot be imported: {e}") from None


def select_metrics(names: Sequence[str] | None, *, toy: bool, weights_dir: str | os.PathLike | None,
                   log: Callable[[str], None] = print) -> list[Metric]:
    """The metrics a sweep measures: ``names`` (None: every registered metric that applies), minus toy
    metrics on other models and metrics whose weights are missing (each skip is logged, never faked)."""
    chosen = [get_metric(n) for n in names] if names is not None else list(METRICS.values())
    out = []
    for metric in chosen:
        if metric.models == "toy" and not toy:
            if names is not None:
                raise MetricError(f"metric {metric.name!r} reads toy-world videos; this is not a toy model")
            continue
        if metric.weights is not None:
            path = None if weights_dir is None else Path(weights_dir) / metric.weights
            if path is None or not path.exists():
                where = "no --metrics-weights folder given" if path is None else f"{path} does not exist"
                log(f"skipping metric {metric.name!r}: it needs weights at <metrics-weights>/{metric.weights} ({where})")
                continue
        out.append(metric)
    return out


def setup_metrics(metrics: Sequence[Metric], weights_dir: str | os.PathLike | None, prompts: Sequence[str]) -> dict:
    """name -> state of every metric (``setup`` run once; None where a metric has none)."""
    states = {}
    for metric in metrics:
        path = None if metric.weights is None or weights_dir is None else Path(weights_dir) / metric.weights
        states[metric.name] = None if metric.setup is None else metric.setup(path, list(prompts))
    return states


def measure(metrics: Sequence[Metric], states: dict, video: jax.Array, baseline: jax.Array, prompt_index) -> dict:
    """column -> float32 [] of every metric for one video (traced; uint8 or [0, 1] float videos)."""
    video, baseline = as_unit(video), as_unit(baseline)
    out = {}
    for metric in metrics:
        values = metric.compute(states[metric.name], video, baseline, prompt_index)
        missing = sorted(set(metric.columns) - set(values))
        if missing:
            raise MetricError(f"metric {metric.name!r} did not return columns {missing}")
        out.update({c: jnp.asarray(values[c], jnp.float32) for c in metric.columns})
    return out


def as_unit(video) -> jax.Array:
    """float32 video in [0, 1] from uint8 (/255) or float (as is)."""
    video = jnp.asarray(video)
    return video.astype(jnp.float32) / 255.0 if video.dtype == jnp.uint8 else video.astype(jnp.float32)

# ----------------------------------------------------------------------------------------- built-in


def _ssim(_, video, baseline, __):
    import dm_pix  # deferred: dm_pix is only needed for image metrics

    return {"ssim": jnp.mean(dm_pix.ssim(video, baseline))}  # per frame [F] -> mean


def _psnr(_, video, baseline, __):
    import dm_pix  # deferred: dm_pix is only needed for image metrics

    return {"psnr": jnp.mean(dm_pix.psnr(video, baseline))}


def _temporal_consistency(_, video, __, ___):
    import dm_pix  # deferred: dm_pix is only needed for image metrics

    return {"temporal_consistency": jnp.mean(dm_pix.ssim(video[1:], video[:-1]))}  # F-1 consecutive pairs


def _flicker(_, video, __, ___):
    return {"flicker": jnp.mean(jnp.abs(video[2:] - 2.0 * video[1:-1] + video[:-2]))}


def _motion(_, video, __, ___):
    return {"motion": jnp.mean(jnp.abs(video[1:] - video[:-1]))}


def _toy_setup(_, prompts: Sequence[str]) -> dict:
    """int32 [P, 4] caption attributes (shape, colour, size, motion) of each prompt's first object."""

    attrs = [world.parse(p) for p in prompts]
    table = np.asarray([[int(np.asarray(f)[0]) for f in (a.shape, a.colour, a.size, a.motion)] for a in attrs], np.int32)
    return {"attributes": jnp.asarray(table)}


def _toy_attributes(state, video, _, prompt_index):

    predicted = toy.classify(video)
    truth = state["attributes"][prompt_index]  # [4]: shape, colour, size, motion
    values = (predicted.shape, predicted.colour, predicted.size, predicted.motion)
    names = ("toy_shape_ok", "toy_colour_ok", "toy_size_ok", "toy_motion_ok")
    return {n: ((v == truth[i]) & predicted.present).astype(jnp.float32) for i, (n, v) in enumerate(zip(names, values))}


def _toy_structure(_, video, baseline, __):

    hue_gap = jnp.abs((toy.object_hue(video) - toy.object_hue(baseline) + 180.0) % 360.0 - 180.0)
    hue_gap = jnp.where(toy.object_present(video) & toy.object_present(baseline), hue_gap, jnp.nan)
    return {"toy_mask_iou": toy.mask_iou(video, baseline), "toy_centroid_error": toy.centroid_error(video, baseline),
            "toy_background_psnr": toy.background_psnr(video, baseline), "toy_hue_shift": hue_gap}


def _toy_dynamics(_, video, __, ___):

    steps = jnp.linalg.norm(jnp.diff(toy.centroid_trajectory(video), axis=0), axis=-1)  # [F-1], NaN off-object
    return {"toy_travel": jnp.nansum(steps), "toy_background_flicker": toy.temporal_flicker(video)}


for _metric in (
    Metric("ssim", ("ssim",), _ssim, pairwise=True, description="SSIM with the baseline, mean over frames (dm-pix)"),
    Metric("psnr", ("psnr",), _psnr, pairwise=True, description="PSNR (dB) with the baseline, mean over frames (dm-pix)"),
    Metric("temporal_consistency", ("temporal_consistency",), _temporal_consistency, pairwise=False,
           description="SSIM between consecutive frames, mean over pairs"),
    Metric("flicker", ("flicker",), _flicker, pairwise=False,
           description="mean |f[t+1] - 2 f[t] + f[t-1]| (second temporal difference)"),
    Metric("motion", ("motion",), _motion, pairwise=False, description="mean |f[t+1] - f[t]| (first temporal difference)"),
    Metric("toy_attributes", ("toy_shape_ok", "toy_colour_ok", "toy_size_ok", "toy_motion_ok"), _toy_attributes,
           pairwise=False, setup=_toy_setup, models="toy",
           description="toy: colour / shape / size / motion read from the pixels match the caption (1 or 0; 0 without an object)"),
    Metric("toy_structure", ("toy_mask_iou", "toy_centroid_error", "toy_background_psnr", "toy_hue_shift"),
           _toy_structure, pairwise=True, models="toy",
           description="toy: object-mask IoU, centroid error (px), background PSNR (dB), hue shift (deg) vs the baseline"),
    Metric("toy_dynamics", ("toy_travel", "toy_background_flicker"), _toy_dynamics, pairwise=False, models="toy",
           description="toy: centroid path length (px) and background flicker"),
):
    register_metric(_metric)
