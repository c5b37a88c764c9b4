"""The registry of the weight-based metrics: :data:`METRICS` (name -> :class:`Metric`: weights needed, inputs
taken, direction, compute function) and :func:`compute_metrics`, which runs a selection of it.

To add a metric: write its function in :mod:`.metrics` (uint8 videos in, [N] float64 out), give it a
:class:`Metric` entry here and, if it needs another model, a folder in :data:`.weights.WEIGHTS_LAYOUT` and a
field of :class:`~.weights.MetricWeights`.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .errors import MetricError
from .metrics import (
    DEFAULT_BATCH,
    aesthetic_score,
    clip_directional_similarity,
    clip_score,
    lpips_distance,
    subject_consistency,
)

if TYPE_CHECKING:  # the weights module lists METRICS, so it imports this one
    from .weights import MetricWeights


@dataclasses.dataclass(frozen=True)
class MetricInputs:
    """What a metric may read: videos [N, F, H, W, 3] uint8; references (source / baseline videos,
    same N and F); prompts (the videos' prompts); reference_prompts (the references' prompts)."""

    videos: Any
    references: Any = None
    prompts: Sequence[str] | str | None = None
    reference_prompts: Sequence[str] | str | None = None


@dataclasses.dataclass(frozen=True)
class Metric:
    """One registry entry.

    name; needs: the :class:`MetricWeights` fields it uses; inputs: the :class:`MetricInputs` fields
    it reads; higher_is_better; description; compute(weights, inputs, batch_size) -> [N] float64.
    """

    name: str
    needs: tuple[str, ...]
    inputs: tuple[str, ...]
    higher_is_better: bool
    description: str
    compute: Callable[[MetricWeights, MetricInputs, int], np.ndarray]

    def ready(self, weights: MetricWeights) -> bool:
        """Whether ``weights`` hold everything this metric needs."""
        for need in self.needs:
            if need.startswith("lpips:"):
                if need.split(":", 1)[1] not in weights.lpips:
                    return False
            elif getattr(weights, need) is None:
                return False
        if "aesthetic" in self.needs:
            return weights.clip.config.projection_dim == weights.aesthetic.embed_dim
        return True


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "clip_score", ("clip", "tokenizer"), ("videos", "prompts"), True,
            "CLIP score: mean over frames of max(100 cos(frame, prompt), 0) (torchmetrics CLIPScore)",
            lambda w, x, b: clip_score(w.clip, w.tokenizer, x.videos, x.prompts, batch_size=b),
        ),
        Metric(
            "clip_directional_similarity", ("clip", "tokenizer"),
            ("videos", "references", "prompts", "reference_prompts"), True,
            "CLIP directional similarity: mean over frames of cos(I_edit - I_source, T_target - T_source)",
            lambda w, x, b: clip_directional_similarity(
                w.clip, w.tokenizer, x.videos, x.references, x.prompts, x.reference_prompts, batch_size=b
            ),
        ),
        Metric(
            "aesthetic_score", ("clip", "aesthetic"), ("videos",), True,
            "LAION aesthetic score (1-10) on CLIP ViT-L/14 image embeddings, mean over frames",
            lambda w, x, b: aesthetic_score(w.clip, w.aesthetic, x.videos, batch_size=b),
        ),
        Metric(
            "subject_consistency", ("dino",), ("videos",), True,
            "VBench subject consistency: DINO feature similarity to the previous and the first frame",
            lambda w, x, b: subject_consistency(w.dino, x.videos, batch_size=b),
        ),
        Metric(
            "lpips", ("lpips:alex",), ("videos", "references"), False,
            "LPIPS (AlexNet, v0.1) to the reference video, mean over frames",
            lambda w, x, b: lpips_distance(w.lpips["alex"], x.videos, x.references, batch_size=b),
        ),
        Metric(
            "lpips_vgg", ("lpips:vgg",), ("videos", "references"), False,
            "LPIPS (VGG16, v0.1) to the reference video, mean over frames",
            lambda w, x, b: lpips_distance(w.lpips["vgg"], x.videos, x.references, batch_size=b),
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class MetricResults:
    """scores: metric name -> [N] float64, for the metrics that ran; messages: why others did not."""

    scores: dict[str, np.ndarray]
    messages: list[str]


def compute_metrics(
    weights: MetricWeights,
    *,
    videos,
    references=None,
    prompts: Sequence[str] | str | None = None,
    reference_prompts: Sequence[str] | str | None = None,
    names: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> MetricResults:
    """Run the metrics ``names`` (default: all of :data:`METRICS`) that ``weights`` and the given
    inputs allow; each one skipped is explained in ``messages`` (missing weights: the folder's
    message; missing inputs: which argument). Inputs are checked (shapes, dtypes, counts) by the
    metrics themselves, and bad ones raise :class:`MetricError`.
    """
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"unknown metric(s) {unknown}; available: {', '.join(METRICS)}")
    inputs = MetricInputs(videos, references, prompts, reference_prompts)
    scores: dict[str, np.ndarray] = {}
    messages: list[str] = []
    for name in names:
        metric = METRICS[name]
        if not metric.ready(weights):
            why = [m for m in weights.messages if name in m.split(" skipped")[0].split(", ")]
            messages.append(why[0] if why else f"{name} skipped: its weights ({', '.join(metric.needs)}) are not loaded")
            continue
        absent = [field for field in metric.inputs if getattr(inputs, field) is None]
        if absent:
            messages.append(f"{name} skipped: it needs {', '.join(absent)}")
            continue
        scores[name] = metric.compute(weights, inputs, batch_size)
    return MetricResults(scores, messages)
