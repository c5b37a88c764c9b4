"""Load CogVideoX's models from diffusers / transformers ``save_pretrained`` folders, strictly.

- ``transformer/``: :func:`load_cogvideox_transformer` (``CogVideoXTransformer3DModel``);
- ``vae/``: :func:`load_cogvideox_vae` (``AutoencoderKLCogVideoX``);
- ``text_encoder/``: :func:`load_t5_encoder` (transformers ``T5EncoderModel``).

Every folder may hold one safetensors / .bin file or sharded safetensors with an index (the 5B
transformer and the T5-XXL encoder ship sharded). Our parameter names are the checkpoints' module paths,
so conversion is :func:`convert.fill.fill_module` (every key used, every parameter filled, shapes and
dtypes checked, errors naming the key and file), cached with orbax keyed by the files' contents. T5's
token embedding is stored as ``shared.weight`` and, tied to it, possibly again as
``encoder.embed_tokens.weight``: both must then be equal, and one fills ``shared``.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..models.cogvideox_transformer import (
    CogVideoXTransformer3DModel,
    CogVideoXTransformerConfig,
)
from ..models.cogvideox_vae import AutoencoderKLCogVideoX, AutoencoderKLCogVideoXConfig
from ..models.t5 import T5Config, T5EncoderModel
from .cache import cached_load, load_folder
from .fill import fill_module
from .readers import (
    ConversionError,
    read_config,
    read_folder,
    read_model_config,
    weight_files,
)

TIED_EMBEDDING = "encoder.embed_tokens.weight"
SHARED_EMBEDDING = "shared.weight"


def _check_class(config: dict, path, expected: str) -> None:
    name = config.get("_class_name")
    if name is not None and name != expected:
        raise ConversionError(f"{Path(path) / 'config.json'} has _class_name={name!r}; expected {expected}")


def load_cogvideox_transformer(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
                               cache_dir: str | os.PathLike | None = None):
    """A :class:`models.cogvideox_transformer.CogVideoXTransformer3DModel` from a diffusers folder.

    Args:
      path: the ``transformer/`` folder (config.json + weights, sharded or not).
      dtype: parameter and compute dtype.
      cache, cache_dir: the conversion cache (:func:`convert.cache.cached_load`).

    Raises:
      ConversionError: missing or malformed files, an unsupported config, or keys / shapes that do not fit.
    """

    _check_class(read_config(path), path, "CogVideoXTransformer3DModel")
    config = read_model_config(CogVideoXTransformerConfig.from_dict, path, "CogVideoXTransformer3DModel")
    model = CogVideoXTransformer3DModel.abstract(config, dtype=dtype)
    load_folder(model, path, what="CogVideoXTransformer3DModel", cache=cache, cache_dir=cache_dir)
    return model


def load_cogvideox_vae(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
                       cache_dir: str | os.PathLike | None = None):
    """A :class:`models.cogvideox_vae.AutoencoderKLCogVideoX` from a diffusers ``vae/`` folder (see
    :func:`load_cogvideox_transformer` for the arguments)."""

    _check_class(read_config(path), path, "AutoencoderKLCogVideoX")
    config = read_model_config(AutoencoderKLCogVideoXConfig.from_dict, path, "AutoencoderKLCogVideoX")
    model = nnx.eval_shape(lambda: AutoencoderKLCogVideoX(config, dtype=dtype, rngs=nnx.Rngs(0)))
    load_folder(model, path, what="AutoencoderKLCogVideoX", cache=cache, cache_dir=cache_dir)
    return model


def untie_t5_embedding(tensors: dict[str, np.ndarray], sources: dict[str, str]) -> tuple[dict, dict]:
    """The state dict with T5's tied token embedding under ``shared.weight`` only.

    ``encoder.embed_tokens.weight`` alone is renamed; next to ``shared.weight`` it must hold the same
    values (a ConversionError names both files otherwise) and is dropped.
    """
    tensors, sources = dict(tensors), dict(sources)
    if TIED_EMBEDDING not in tensors:
        return tensors, sources
    tied, tied_source = tensors.pop(TIED_EMBEDDING), sources.pop(TIED_EMBEDDING, "?")
    if SHARED_EMBEDDING not in tensors:
        tensors[SHARED_EMBEDDING], sources[SHARED_EMBEDDING] = tied, tied_source
    elif tensors[SHARED_EMBEDDING].shape != tied.shape or not np.array_equal(tensors[SHARED_EMBEDDING], tied):
        raise ConversionError(
            f"{TIED_EMBEDDING!r} (from {tied_source}) and {SHARED_EMBEDDING!r} (from {sources.get(SHARED_EMBEDDING, '?')}) "
            "differ; T5EncoderModel ties them, so a checkpoint must hold the same embedding in both"
        )
    return tensors, sources


def load_t5_encoder(path: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True,
                    cache_dir: str | os.PathLike | None = None):
    """A :class:`models.t5.T5EncoderModel` from a transformers ``text_encoder/`` folder (see
    :func:`load_cogvideox_transformer` for the arguments)."""

    config = read_config(path)
    if config.get("model_type", "t5") != "t5":
        raise ConversionError(f"{Path(path) / 'config.json'} has model_type={config['model_type']!r}; expected 't5'")
    t5_config = read_model_config(T5Config.from_dict, path, "T5")
    model = nnx.eval_shape(lambda: T5EncoderModel(t5_config, dtype=dtype, rngs=nnx.Rngs(0)))

    def convert(target) -> None:
        checkpoint = read_folder(path)
        tensors, sources = untie_t5_embedding(checkpoint.tensors, checkpoint.sources)
        fill_module(target, tensors, sources=sources, what=f"T5EncoderModel from {path}")

    if cache:
        cached_load(model, weight_files(path), convert, cache_dir=cache_dir, version="t5_encoder")
    else:
        convert(model)
    return model
