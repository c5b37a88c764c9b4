"""Loaders for the weights of the evaluation metrics, from local files only.

- CLIP: a transformers ``CLIPModel`` folder (:func:`convert.folders.load_clip_model`),
  plus its tokenizer when the folder has one.
- DINO: a transformers ``ViTModel`` (``facebook/dino-vitb16``) or ``Dinov2Model`` folder, told apart
  by ``model_type`` in config.json.
- LPIPS: the lpips package's linear heads (``lpips/weights/v0.1/alex.pth`` or ``vgg.pth``) plus
  torchvision's ImageNet weights of the trunk (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``);
  a file that holds a whole lpips ``LPIPS`` state dict (``net.sliceK.*`` and ``lin*``) needs no trunk file.
- LAION aesthetic head: the improved-aesthetic-predictor MLP or the original linear head.

State-dict files are ``.safetensors`` or PyTorch pickles (``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin``),
the latter read with ``torch.load(weights_only=True)`` (:func:`convert.readers.read_state_dict_file`,
which says so when torch is missing). Every load is strict: every tensor used, every parameter filled,
shapes checked, errors naming the key and file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..models.aesthetic import AestheticHead
from ..models.dino import Dinov2Model, ViTModel
from ..models.lpips import LPIPS, NETS
from .fill import fill_module
from .folders import load_clip_model, load_vit
from .readers import ConversionError, read_config, read_state_dict_file

DINO_MODEL_TYPES = {"vit": ViTModel, "dinov2": Dinov2Model}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_LPIPS_SLICE = re.compile(r"^net\.slice\d+\.(\d+\..+)$")
_LPIPS_LINS = re.compile(r"^lins\.(\d+)\.")
_LPIPS_BUFFERS = ("scaling_layer.shift", "scaling_layer.scale")


def load_clip(folder: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True):
    """(CLIPModel, tokenizer or None) from a transformers ``CLIPModel`` folder; the tokenizer is
    transformers' ``CLIPTokenizer`` when the folder holds tokenizer files, else None."""
    model = load_clip_model(folder, dtype=dtype, cache=cache)
    return model, load_clip_tokenizer(folder)


def load_clip_tokenizer(folder: str | os.PathLike):
    """transformers' ``CLIPTokenizer`` from ``folder``, or None when it has no tokenizer files."""
    folder = Path(folder)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import (  # deferred: transformers takes seconds to import
        CLIPTokenizer,  # deferred: transformers takes seconds to import
    )

    return CLIPTokenizer.from_pretrained(str(folder))


def load_dino(folder: str | os.PathLike, *, dtype=jnp.float32, cache: bool = True):
    """A :class:`models.dino.ViTModel` or :class:`models.dino.Dinov2Model`, by config.json's ``model_type``."""
    model_type = read_config(folder).get("model_type")
    if model_type not in DINO_MODEL_TYPES:
        raise ConversionError(
            f"{folder}/config.json has model_type {model_type!r}; a DINO folder holds a transformers "
            f"ViTModel (facebook/dino-vitb16) or Dinov2Model: model_type {' or '.join(map(repr, DINO_MODEL_TYPES))}"
        )
    return load_vit(DINO_MODEL_TYPES[model_type], folder, dtype=dtype, cache=cache)


def load_lpips(
    heads: str | os.PathLike, trunk: str | os.PathLike | None = None, *, net: str = "alex", dtype=jnp.float32
) -> LPIPS:
    """An :class:`models.lpips.LPIPS` from the lpips heads file and torchvision's trunk weights.

    Args:
      heads: lpips' ``alex.pth`` / ``vgg.pth`` (keys ``lin{k}.model.1.weight``), or a whole ``LPIPS``
        state dict (also ``net.slice{k}.{i}.*``, then ``trunk`` must be None).
      trunk: torchvision's ``alexnet`` / ``vgg16`` state dict (``features.{i}.*``; its ``classifier.*``
        is not used), when ``heads`` holds only the heads.
      net: "alex" or "vgg", the trunk the files are for.
    """
    if net not in NETS:
        raise ConversionError(f"unknown LPIPS net {net!r}; supported: {', '.join(NETS)}")
    tensors, sources = {}, {}
    for key, value in read_state_dict_file(heads).items():
        if key in _LPIPS_BUFFERS:
            continue
        name = _LPIPS_SLICE.sub(r"features.\1", key)
        name = _LPIPS_LINS.sub(r"lin\1.", name)
        if name in tensors:  # LPIPS.state_dict() lists each head twice: lin{k}.* and its alias lins.{k}.*
            if not np.array_equal(tensors[name], value):
                raise ConversionError(f"{heads}: {key!r} and {name!r} should be the same head but differ")
            continue
        tensors[name], sources[name] = value, str(heads)
    has_trunk = any(k.startswith("features.") for k in tensors)
    if has_trunk and trunk is not None:
        raise ConversionError(f"{heads} already holds the LPIPS trunk (net.slice* keys); do not pass a trunk file too")
    if not has_trunk:
        if trunk is None:
            raise ConversionError(f"{heads} holds only the LPIPS heads; the {net} trunk weights (torchvision) are needed too")
        for key, value in read_state_dict_file(trunk).items():
            if key.startswith("classifier."):
                continue
            tensors[key], sources[key] = value, str(trunk)
    model = nnx.eval_shape(lambda: LPIPS(net, dtype=dtype, rngs=nnx.Rngs(0)))
    fill_module(model, tensors, sources=sources, what=f"LPIPS ({net})")
    return model


def load_aesthetic(path: str | os.PathLike, *, dtype=jnp.float32) -> AestheticHead:
    """The LAION aesthetic head in ``path``: the MLP (``layers.{0,2,4,6,7}.*``) or the linear head
    (``weight`` / ``bias``), told apart by its keys; the embedding width comes from the first weight."""
    tensors = read_state_dict_file(path)
    if set(tensors) == {"weight", "bias"}:
        kind, tensors = "linear", {f"layers.0.{k}": v for k, v in tensors.items()}
    elif "layers.0.weight" in tensors:
        kind = "mlp"
    else:
        raise ConversionError(
            f"{path} is not a LAION aesthetic head: expected keys layers.0.weight ... (MLP) or weight/bias "
            f"(linear), found {sorted(tensors)[:8]}"
        )
    first = tensors["layers.0.weight"]
    if first.ndim != 2:
        raise ConversionError(f"{path}: layers.0.weight has shape {tuple(first.shape)}, expected (out, embed_dim)")
    model = nnx.eval_shape(lambda: AestheticHead(kind, int(first.shape[1]), dtype=dtype, rngs=nnx.Rngs(0)))
    fill_module(model, tensors, sources={k: str(path) for k in tensors}, what=f"aesthetic head ({kind})")
    return model
