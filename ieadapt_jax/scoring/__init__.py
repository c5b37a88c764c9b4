"""The paper's weight-based evaluation metrics, in JAX, with their references' exact preprocessing.

Every metric takes uint8 videos ``[N, F, H, W, 3]`` (any size; frames are resized as the reference
does) and returns one value per video, ``[N]``:

| name | needs | reference it reproduces |
|---|---|---|
| ``clip_score`` | clip/ (+ tokenizer) | mean over frames of torchmetrics' CLIPScore of each frame: max(100 cos(image, prompt), 0) |
| ``clip_directional_similarity`` | clip/ (+ tokenizer) | mean over frame pairs of cos(I_edit - I_source, T_target - T_source), features L2-normalised (diffusers' evaluation guide, StyleGAN-NADA) |
| ``aesthetic_score`` | clip/ (ViT-L/14), aesthetic/ | mean over frames of the LAION predictor on the L2-normalised CLIP image embedding (1-10) |
| ``subject_consistency`` | dino/ | VBench: DINO class-token features; per frame i >= 1, (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2; mean over frames |
| ``lpips`` / ``lpips_vgg`` | lpips/ | mean over frames of LPIPS v0.1 (AlexNet / VGG16) between each frame and the reference's |

Modules: :mod:`.preprocessing` (the references' resizing and normalisation), :mod:`.metrics` (features, the
formulas on them, one function per metric), :mod:`.weights` (the ``--metrics-weights DIR`` folder laid out as
:data:`WEIGHTS_LAYOUT` says; :func:`load_metric_weights` loads what is there and explains what is missing; a
metric without its weights is skipped with that message, never estimated), :mod:`.registry` (:data:`METRICS`,
name -> :class:`Metric`: weights needed, inputs taken, direction, compute function; :func:`compute_metrics`
runs a selection of it), :mod:`.errors` (:class:`MetricError`). The sweep's plug-ins of these metrics are
:mod:`ieadapt_jax.sweep.weighted_metrics`.

    weights = load_metric_weights("weights/")
    print(weights.messages)                                   # what was skipped and why
    result = compute_metrics(weights, videos=videos, references=sources,
                             prompts=targets, reference_prompts=source_prompts)
    result.scores["clip_score"]                               # [N] float64

From the shell: ``python -m ieadapt_jax.scoring --metrics-weights DIR --video edited.mp4
--reference source.mp4 --prompt "..." --reference-prompt "..."`` (:mod:`ieadapt_jax.cli.score`).
"""
from .errors import MetricError
from .metrics import (
    DEFAULT_BATCH,
    aesthetic_score,
    clip_directional_similarity,
    clip_frame_features,
    clip_image_embeddings,
    clip_score,
    clip_score_from,
    clip_text_embeddings,
    cosine,
    dino_features,
    dino_frame_features,
    directional_similarity_from,
    full_precision,
    lpips_distance,
    per_frame,
    subject_consistency,
    subject_consistency_from,
    unit,
)
from .preprocessing import (
    CLIP_MEAN,
    CLIP_SIZE,
    CLIP_STD,
    DINO_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_pixels,
    dino_pixels,
    lpips_pixels,
)
from .registry import METRICS, Metric, MetricInputs, MetricResults, compute_metrics
from .weights import WEIGHTS_LAYOUT, MetricWeights, load_metric_weights

__all__ = [
    "CLIP_MEAN",
    "CLIP_SIZE",
    "CLIP_STD",
    "DEFAULT_BATCH",
    "DINO_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METRICS",
    "Metric",
    "MetricError",
    "MetricInputs",
    "MetricResults",
    "MetricWeights",
    "WEIGHTS_LAYOUT",
    "aesthetic_score",
    "clip_directional_similarity",
    "clip_frame_features",
    "clip_image_embeddings",
    "clip_pixels",
    "clip_score",
    "clip_score_from",
    "clip_text_embeddings",
    "compute_metrics",
    "cosine",
    "dino_features",
    "dino_frame_features",
    "dino_pixels",
    "directional_similarity_from",
    "full_precision",
    "load_metric_weights",
    "lpips_distance",
    "lpips_pixels",
    "per_frame",
    "subject_consistency",
    "subject_consistency_from",
    "unit",
]
