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

Preprocessing: CLIP images as transformers' ``CLIPImageProcessor`` (Pillow backend) and OpenAI CLIP's
``preprocess``: shortest edge to 224 with Pillow's bicubic, centre crop 224, /255, CLIP mean/std
(:func:`clip_pixels`, bit-exact through :func:`ieadapt_jax.image_resize.resize_like_pil`). DINO as
VBench's ``dino_transform``: shortest edge to 224 with torchvision's tensor bilinear resize
(antialias off, rounded back to uint8), no crop, /255, ImageNet mean/std (:func:`dino_pixels`), and
DINO's own position-embedding interpolation for non-square frames. LPIPS as ``lpips.im2tensor``:
x / 127.5 - 1 at the videos' own resolution.

**Weights** come from a folder (``--metrics-weights DIR``) laid out as :data:`WEIGHTS_LAYOUT` says;
:func:`load_metric_weights` loads what is there and explains what is missing; a metric without its
weights is skipped with that message, never estimated. :data:`METRICS` is the registry (name ->
:class:`Metric`: weights needed, inputs taken, direction, compute function) and :func:`compute_metrics`
runs a selection of it. :func:`sweep_metrics` / :func:`register_sweep_metrics` turn them into
plug-ins of :mod:`ieadapt_jax.sweep.metrics`.

    weights = load_metric_weights("weights/")
    print(weights.messages)                                   # what was skipped and why
    result = compute_metrics(weights, videos=videos, references=sources,
                             prompts=targets, reference_prompts=source_prompts)
    result.scores["clip_score"]                               # [N] float64

From the shell: ``python -m ieadapt_jax.scoring --metrics-weights DIR --video edited.mp4
--reference source.mp4 --prompt "..." --reference-prompt "..."`` (:func:`main`).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .convert.common import read_state_dict_file
from .convert.metrics_weights import load_aesthetic, load_clip, load_dino, load_lpips
from .models.resize import (
    center_crop,
    resize_like_pil,
    resize_like_torch,
    shortest_edge_size,
)
from .video_io import VideoError, read_video

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_SIZE = 224
DINO_SIZE = 224
DEFAULT_BATCH = 16
_NORM_EPS = 1e-12
_COS_EPS = 1e-8

WEIGHTS_LAYOUT = """\
DIR/
  clip/         transformers CLIPModel folder with its tokenizer (config.json, model.safetensors,
                vocab.json, merges.txt, ...), e.g. openai/clip-vit-large-patch14:
                clip_score, clip_directional_similarity, and the image tower of aesthetic_score
  aesthetic/    one LAION aesthetic head file, under its own name: sac+logos+ava1-l14-linearMSE.pth
                (improved-aesthetic-predictor MLP) or sa_0_4_vit_l_14_linear.pth (linear head);
                needs clip/ to give 768-d embeddings (CLIP ViT-L/14): aesthetic_score
  dino/         transformers ViTModel folder (facebook/dino-vitb16) or Dinov2Model folder: subject_consistency
  lpips/        alex.pth (the lpips package's lpips/weights/v0.1/alex.pth) and alexnet*.pth
                (torchvision's alexnet-owt-7be5be79.pth): lpips;
                vgg.pth (lpips/weights/v0.1/vgg.pth) and vgg16*.pth (torchvision's vgg16-397923af.pth): lpips_vgg
Weight files may be .safetensors, .pth, .pt, .bin or .ckpt. A heads file that holds a whole lpips
LPIPS state dict (net.slice* keys too) needs no torchvision file."""
_STATE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
_LPIPS_FILES = {"lpips": ("alex", "alex", "alexnet*"), "lpips_vgg": ("vgg", "vgg", "vgg16*")}  # net, heads, trunk


class MetricError(ValueError):
    """Bad metric input or weights folder; the message names the argument, file or metric at fault."""

# ------------------------------------------------------------------------------------------ preprocessing


def clip_pixels(frames: jax.Array, size: int = CLIP_SIZE) -> jax.Array:
    """CLIP preprocessing of uint8 frames [..., H, W, 3] -> float32 [..., size, size, 3]: Pillow
    bicubic resize of the shortest edge to ``size``, centre crop, /255, CLIP mean/std."""
    _check_frames(frames, "frames")
    h, w = shortest_edge_size(frames.shape[-3], frames.shape[-2], size)
    x = center_crop(resize_like_pil(frames, (h, w), "bicubic"), (size, size))
    x = x.astype(jnp.float32) * np.float32(1 / 255)
    return (x - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)


def dino_pixels(frames: jax.Array, size: int = DINO_SIZE) -> jax.Array:
    """VBench's DINO preprocessing of uint8 frames [..., H, W, 3] -> float32 [..., h, w, 3]:
    torchvision tensor bilinear resize of the shortest edge to ``size`` (antialias off, uint8
    rounding), no crop, /255, ImageNet mean/std."""
    _check_frames(frames, "frames")
    h, w = shortest_edge_size(frames.shape[-3], frames.shape[-2], size)
    x = frames if (h, w) == frames.shape[-3:-1] else resize_like_torch(frames, (h, w), "bilinear")
    x = x.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


def lpips_pixels(frames: jax.Array) -> jax.Array:
    """uint8 frames -> float32 in [-1, 1] as ``lpips.im2tensor`` (x / 127.5 - 1)."""
    _check_frames(frames, "frames")
    return frames.astype(jnp.float32) / np.float32(255.0 / 2.0) - 1.0


def _check_frames(frames, name: str) -> None:
    if getattr(frames, "dtype", None) != jnp.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise MetricError(
            f"{name} must be uint8 RGB [..., H, W, 3], got {getattr(frames, 'dtype', type(frames).__name__)} "
            f"{list(getattr(frames, 'shape', []))}"
        )

# ------------------------------------------------------------------------------------------ features


def unit(x: jax.Array) -> jax.Array:
    """L2-normalise the last axis (torch's F.normalize: x / max(|x|, 1e-12))."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


def _clip_image_frames(clip, frames):
    return unit(clip.get_image_features(clip_pixels(frames)))


def _dino_frames(dino, frames):
    return unit(dino(dino_pixels(frames), pos_interpolation="dino").last_hidden_state[:, 0])


def _lpips_frames(lpips, pairs):
    return lpips(lpips_pixels(pairs[:, 0]), lpips_pixels(pairs[:, 1]))


def _clip_text(clip, ids, mask):
    return unit(clip.get_text_features(ids, mask))


def full_precision(fn: Callable) -> Callable:
    """``fn`` traced with float32 matmuls at full precision, as the PyTorch references compute (XLA
    may otherwise use TF32 / bf16 passes for float32 matmuls on GPUs)."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return traced


@functools.lru_cache(maxsize=32)
def _jitted(graphdef, fn: Callable) -> Callable:
    """jit of ``fn(model, x)`` as a pure function of (state, x), one per (model structure, fn)."""
    return jax.jit(full_precision(lambda state, *args: fn(nnx.merge(graphdef, state), *args)))


def _per_frame(model, fn: Callable, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """``fn(model, chunk)`` over the leading axis of ``frames`` in jitted chunks of ``batch_size``
    (the last one padded, so every chunk has one shape): [M, ...] -> [M, ...out]."""
    if batch_size < 1:
        raise MetricError(f"batch_size must be >= 1, got {batch_size}")
    graphdef, state = nnx.split(model)
    run = _jitted(graphdef, fn)
    outs = []
    for start in range(0, frames.shape[0], batch_size):
        chunk = frames[start : start + batch_size]
        pad = batch_size - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(run(state, jnp.asarray(chunk)))[: batch_size - pad])
    return np.concatenate(outs)


def clip_image_embeddings(clip, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """[N, F, H, W, 3] uint8 -> [N, F, P] L2-normalised CLIP image embeddings."""
    videos = _videos(videos, "videos")
    N, F = videos.shape[:2]
    flat = videos.reshape(N * F, *videos.shape[2:])  # [N·F, H, W, 3]
    return _per_frame(clip, _clip_image_frames, flat, batch_size).reshape(N, F, -1)


def clip_text_embeddings(clip, tokenizer, prompts: Sequence[str]) -> np.ndarray:
    """[N] prompts -> [N, P] L2-normalised CLIP text embeddings (padded to the text tower's length,
    truncated there as transformers' tokenizer does with ``truncation=True``)."""
    if tokenizer is None:
        raise MetricError("CLIP text embeddings need a tokenizer: the clip/ folder has no tokenizer files")
    length = clip.config.text.max_position_embeddings
    tokens = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="np")
    graphdef, state = nnx.split(clip)
    run = _jitted(graphdef, _clip_text)
    ids = jnp.asarray(tokens["input_ids"], jnp.int32)
    return np.asarray(run(state, ids, jnp.asarray(tokens["attention_mask"], jnp.int32)))


def dino_features(dino, videos, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """[N, F, H, W, 3] uint8 -> [N, F, D] L2-normalised DINO class-token features (VBench's)."""
    videos = _videos(videos, "videos")
    N, F = videos.shape[:2]
    flat = videos.reshape(N * F, *videos.shape[2:])  # [N·F, H, W, 3]
    return _per_frame(dino, _dino_frames, flat, batch_size).reshape(N, F, -1)

# ------------------------------------------------------------------------------------------ metrics from features


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """torch's F.cosine_similarity over the last axis: a·b / max(|a| |b|, 1e-8)."""
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, _COS_EPS)


def clip_score_from(image: jax.Array, text: jax.Array) -> jax.Array:
    """image [N, F, P], text [N, P] (unit vectors) -> [N]: mean over frames of max(100 cos, 0)."""
    per_frame = 100.0 * jnp.einsum("nfp,np->nf", image, text)
    return jnp.mean(jnp.maximum(per_frame, 0.0), axis=1)


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
    return _per_frame(lpips, _lpips_frames, pairs, batch_size).reshape(N, F).mean(axis=1, dtype=np.float64)


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

# ------------------------------------------------------------------------------------------ weights folder


@dataclasses.dataclass
class MetricWeights:
    """The models found in a weights folder (:func:`load_metric_weights`); None where absent.

    clip, tokenizer: CLIPModel and its CLIPTokenizer; aesthetic: AestheticHead; dino: ViTModel or
    Dinov2Model; lpips: {"alex" / "vgg": LPIPS}; messages: one line per metric skipped and why.
    """

    folder: str | None = None
    clip: Any = None
    tokenizer: Any = None
    aesthetic: Any = None
    dino: Any = None
    lpips: dict[str, Any] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the metrics these weights can compute, in registry order."""
        return tuple(name for name, metric in METRICS.items() if metric.ready(self))


def load_metric_weights(folder: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True) -> MetricWeights:
    """Load every metric model present in ``folder`` (layout: :data:`WEIGHTS_LAYOUT`).

    A missing file or folder skips the metrics that need it, with a message in ``.messages``; a file
    that is present but unreadable or does not fit its model raises (ConversionError from
    :mod:`convert`), naming the file.
    """

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise MetricError(f"metrics weights folder {root} does not exist (expected layout:\n{WEIGHTS_LAYOUT})")
    weights = MetricWeights(folder=str(root))
    say = weights.messages.append

    if (root / "clip").is_dir():
        weights.clip, weights.tokenizer = load_clip(root / "clip", dtype=dtype, cache=cache)
        if weights.tokenizer is None:
            say(f"clip_score, clip_directional_similarity skipped: {root / 'clip'} has no tokenizer files (vocab.json + merges.txt or tokenizer.json)")
    else:
        say(f"clip_score, clip_directional_similarity, aesthetic_score skipped: no clip/ folder in {root} (a transformers CLIPModel folder, e.g. openai/clip-vit-large-patch14)")

    aesthetic = _weight_file(root / "aesthetic", "*") if (root / "aesthetic").is_dir() else None
    if aesthetic is None:
        say(f"aesthetic_score skipped: no aesthetic/ folder with a weight file in {root} (the LAION aesthetic head)")
    else:
        weights.aesthetic = load_aesthetic(aesthetic, dtype=dtype)
        width = None if weights.clip is None else weights.clip.config.projection_dim
        if width is not None and width != weights.aesthetic.embed_dim:
            say(
                f"aesthetic_score skipped: {aesthetic} takes {weights.aesthetic.embed_dim}-d CLIP embeddings but "
                f"{root / 'clip'} gives {width}-d ones (the head is trained on CLIP ViT-L/14)"
            )

    if (root / "dino").is_dir():
        weights.dino = load_dino(root / "dino", dtype=dtype, cache=cache)
    else:
        say(f"subject_consistency skipped: no dino/ folder in {root} (a transformers ViTModel folder: facebook/dino-vitb16)")

    for name, (net, heads_stem, trunk_pattern) in _LPIPS_FILES.items():
        lpips_dir = root / "lpips"
        heads = _weight_file(lpips_dir, heads_stem) if lpips_dir.is_dir() else None
        if heads is None:
            say(f"{name} skipped: no lpips/{heads_stem}.pth in {root} (the lpips package's weights/v0.1/{heads_stem}.pth)")
            continue
        trunk = _weight_file(lpips_dir, trunk_pattern)
        if trunk is None and not _holds_trunk(heads):
            say(f"{name} skipped: {heads} holds only the LPIPS heads and lpips/ has no {trunk_pattern}.pth (torchvision's {net} weights)")
            continue
        weights.lpips[net] = load_lpips(heads, trunk, net=net, dtype=dtype)
    return weights


def _weight_file(folder: Path, pattern: str) -> Path | None:
    """The one weight file ``folder/<pattern><suffix>`` (glob pattern, suffix in _STATE_SUFFIXES), or None."""
    found = sorted(f for suffix in _STATE_SUFFIXES for f in folder.glob(pattern + suffix) if f.is_file())
    if len(found) > 1:
        raise MetricError(f"ambiguous weights in {folder}: {', '.join(f.name for f in found)}; keep one")
    return found[0] if found else None


def _holds_trunk(heads: Path) -> bool:

    return any(key.startswith("net.slice") for key in read_state_dict_file(heads))

# ------------------------------------------------------------------------------------------ registry


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

# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ieadapt_jax.scoring``: score video files; prints one line per video and metric,
    optionally writes them as JSON. Bad input exits 2 with a message."""
    parser = argparse.ArgumentParser(
        prog="python -m ieadapt_jax.scoring",
        description="Score videos with CLIP score, CLIP directional similarity, LAION aesthetic score, "
        "VBench subject consistency and LPIPS, from local weights.",
        epilog="--metrics-weights layout:\n" + WEIGHTS_LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--metrics-weights", required=True, metavar="DIR", help="weights folder (layout below)")
    parser.add_argument("--video", required=True, nargs="+", metavar="PATH", help="videos to score (mp4, gif, frame folder)")
    parser.add_argument("--reference", nargs="+", metavar="PATH", help="one reference (source) video per --video")
    parser.add_argument("--prompt", nargs="+", metavar="TEXT", help="the videos' prompt(s): one, or one per video")
    parser.add_argument("--reference-prompt", nargs="+", metavar="TEXT", help="the references' prompt(s)")
    parser.add_argument("--metrics", metavar="A,B", help=f"comma-separated subset of: {', '.join(METRICS)}")
    parser.add_argument("--num-frames", type=int, metavar="F", help="score only the first F frames")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="frames per compiled batch")
    parser.add_argument("--json", metavar="FILE", help="also write {video: {metric: value}} to FILE")
    args = parser.parse_args(argv)

    try:
        names = None if args.metrics is None else [n.strip() for n in args.metrics.split(",") if n.strip()]
        n = len(args.video)
        references = _per_video(args.reference, n, "--reference", broadcast=False)
        prompts = _per_video(args.prompt, n, "--prompt")
        reference_prompts = _per_video(args.reference_prompt, n, "--reference-prompt")
        weights = load_metric_weights(args.metrics_weights)
        table: dict[str, dict[str, float]] = {}
        messages: list[str] = []
        for i, path in enumerate(args.video):
            video = read_video(path, num_frames=args.num_frames)[None]
            reference = None if references is None else read_video(references[i], num_frames=args.num_frames)[None]
            result = compute_metrics(
                weights, videos=video, references=reference, names=names, batch_size=args.batch_size,
                prompts=None if prompts is None else [prompts[i]],
                reference_prompts=None if reference_prompts is None else [reference_prompts[i]],
            )
            table[path] = {name: float(value[0]) for name, value in result.scores.items()}
            messages += [m for m in result.messages if m not in messages]
    except (MetricError, VideoError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for message in messages:
        print(message, file=sys.stderr)
    for path, scores in table.items():
        for name, value in scores.items():
            print(f"{path}\t{name}\t{value:.6f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0


def _per_video(values: Sequence[str] | None, n: int, flag: str, *, broadcast: bool = True) -> list[str] | None:
    if values is None:
        return None
    if broadcast and len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise MetricError(f"{flag} takes {'one value or ' if broadcast else ''}one value per --video ({n}), got {len(values)}")
    return list(values)


if __name__ == "__main__":
    sys.exit(main())
