"""The metrics' reference preprocessing of uint8 frames, exact to the references.

CLIP images as transformers' ``CLIPImageProcessor`` (Pillow backend) and OpenAI CLIP's ``preprocess``: shortest
edge to 224 with Pillow's bicubic, centre crop 224, /255, CLIP mean/std (:func:`clip_pixels`, bit-exact through
:func:`ieadapt_jax.models.resize.resize_like_pil`). DINO as VBench's ``dino_transform``: shortest edge to 224
with torchvision's tensor bilinear resize (antialias off, rounded back to uint8), no crop, /255, ImageNet
mean/std (:func:`dino_pixels`). LPIPS as ``lpips.im2tensor``: x / 127.5 - 1 at the frames' own resolution
(:func:`lpips_pixels`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..models.resize import (
    center_crop,
    resize_like_pil,
    resize_like_torch,
    shortest_edge_size,
)
from .errors import MetricError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_SIZE = 224
DINO_SIZE = 224


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
