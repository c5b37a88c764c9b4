"""Single-model ``save_pretrained`` folders (config.json + safetensors) into our ports, strictly.

    text_encoder = load_clip_text("snapshot/text_encoder")      # transformers CLIPTextModel
    vae = load_vae("snapshot/vae")                              # diffusers AutoencoderKL
    clip = load_clip_model("weights/clip")                      # transformers CLIPModel
    dino = load_vit(ViTModel, "weights/dino")                   # transformers ViTModel / Dinov2Model

Each reads the folder's config.json into the port's frozen config (a bad value is a ConversionError naming the
file), builds the module abstractly and fills it with :func:`~ieadapt_jax.convert.cache.load_folder`: every
key used, every parameter filled, every shape checked, and the result kept in the orbax conversion cache
unless ``cache`` is False. The multi-part models have their own modules (:mod:`.animatediff`, :mod:`.cogvideox`).
"""
from __future__ import annotations

import os

import jax.numpy as jnp
from flax import nnx

from ..models.clip_text import CLIPTextConfig, CLIPTextModel
from ..models.clip_vision import CLIPConfig, CLIPModel
from ..models.dino import ViTConfig
from ..models.vae import AutoencoderKL, AutoencoderKLConfig
from .cache import load_folder
from .readers import read_model_config

_CLIP_TEXT_PREFIX = "text_model."


def clip_text_key(key: str) -> str:
    """Our parameter key for a checkpoint key: transformers' on-disk ``text_model.`` prefix dropped."""
    return key[len(_CLIP_TEXT_PREFIX):] if key.startswith(_CLIP_TEXT_PREFIX) else key


def load_clip_text(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
                   cache_dir: str | os.PathLike | None = None) -> CLIPTextModel:
    """A :class:`~ieadapt_jax.models.clip_text.CLIPTextModel` from a transformers folder (sharded or not)."""
    config = read_model_config(CLIPTextConfig.from_dict, path, "CLIPTextModel")
    model = nnx.eval_shape(lambda: CLIPTextModel(config, dtype=dtype, rngs=nnx.Rngs(0)))
    load_folder(model, path, skip=("position_ids",), rename=clip_text_key, what="CLIPTextModel", cache=cache,
                cache_dir=cache_dir)
    return model


def read_vae_config(path: str | os.PathLike) -> AutoencoderKLConfig:
    """The :class:`~ieadapt_jax.models.vae.AutoencoderKLConfig` of a diffusers ``vae/`` folder."""
    return read_model_config(AutoencoderKLConfig.from_dict, path, "AutoencoderKL")


def load_vae(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
             cache_dir: str | os.PathLike | None = None) -> AutoencoderKL:
    """An :class:`~ieadapt_jax.models.vae.AutoencoderKL` from a diffusers ``vae/`` folder."""
    config = read_vae_config(path)
    model = nnx.eval_shape(lambda: AutoencoderKL(config, dtype=dtype, rngs=nnx.Rngs(0)))
    load_folder(model, path, what="AutoencoderKL", cache=cache, cache_dir=cache_dir)
    return model


def load_clip_model(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
                    cache_dir: str | os.PathLike | None = None) -> CLIPModel:
    """A :class:`~ieadapt_jax.models.clip_vision.CLIPModel` (both towers and projections) from a transformers folder."""
    config = read_model_config(CLIPConfig.from_dict, path, "CLIPModel")
    model = nnx.eval_shape(lambda: CLIPModel(config, dtype=dtype, rngs=nnx.Rngs(0)))
    load_folder(model, path, skip=("position_ids",), what="CLIPModel", cache=cache, cache_dir=cache_dir)
    return model


def load_vit(cls, path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
             cache_dir: str | os.PathLike | None = None):
    """A :class:`~ieadapt_jax.models.dino.ViTModel` or :class:`~ieadapt_jax.models.dino.Dinov2Model` (``cls``)
    from a transformers folder; the class's ``SKIP`` keys (pooler, mask token) are not used by the port."""
    config = read_model_config(ViTConfig.from_dict, path, cls.NAME)
    model = nnx.eval_shape(lambda: cls(config, dtype=dtype, rngs=nnx.Rngs(0)))
    load_folder(model, path, skip=cls.SKIP, what=cls.NAME, cache=cache, cache_dir=cache_dir)
    return model
