"""The metrics' weights folder: its layout (:data:`WEIGHTS_LAYOUT`) and :func:`load_metric_weights`.

A missing file or folder skips the metrics that need it, with a message saying what is missing; a metric is
never estimated without its weights. The models are converted by :mod:`ieadapt_jax.convert.metrics_weights`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from ..convert import read_state_dict_file
from ..convert.metrics_weights import load_aesthetic, load_clip, load_dino, load_lpips
from .errors import MetricError
from .registry import METRICS

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
    :mod:`ieadapt_jax.convert`), naming the file.
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
    """Whether an LPIPS heads file holds the whole LPIPS state dict (the trunk's ``net.slice*`` keys too)."""
    return any(key.startswith("net.slice") for key in read_state_dict_file(heads))
