"""Load AnimateDiff's motion UNet (:class:`models.unet_motion.UNetMotionModel`) from local checkpoints.

Accepted layouts (all as written by diffusers ``save_pretrained``, safetensors or pickled .bin):

- a ``UNetMotionModel`` folder;
- a ``UNet2DConditionModel`` folder plus a ``MotionAdapter`` folder (as ``UNetMotionModel.from_unet2d``);
- a ``UNet2DConditionModel`` folder plus an original AnimateDiff motion-module file (``mm_sd_v15_v2.ckpt``,
  ``v3_sd15_mm.ckpt``, or the same keys in .safetensors).

Loading is strict (convert/fill.fill_module: every key used, every parameter filled, shapes checked)
and cached with orbax keyed by the sources' content hashes. The motion modules' sinusoidal
``pos_embed.pe`` buffers are not loaded: the model recomputes them (the values do not depend on the
buffer length).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from ..models.layers import sinusoidal_positions
from ..models.unet_motion import UNetMotionModel
from ..models.unet_motion_config import UNetMotionConfig
from .cache import cached_load
from .fill import fill_module
from .readers import (
    ConversionError,
    read_config,
    read_folder,
    read_state_dict_file,
    weight_files,
)

POSITION_BUFFER = "pos_embed.pe"
_ORIGINAL_POSITION = ".pos_encoder.pe"
# Original AnimateDiff name -> diffusers name, applied in this order (diffusers' single-file converter).
_ORIGINAL_TO_DIFFUSERS = (
    (".norms.0", ".norm1"),
    (".norms.1", ".norm2"),
    (".ff_norm", ".norm3"),
    (".attention_blocks.0", ".attn1"),
    (".attention_blocks.1", ".attn2"),
    (".temporal_transformer", ""),
)
_MOTION_PREFIX = re.compile(r"^((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.(.*)$")


def load_unet_motion(
    unet_dir: str | os.PathLike,
    motion_adapter: str | os.PathLike | None = None,
    *,
    dtype=jnp.float32,
    motion_num_attention_heads: int = 8,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> UNetMotionModel:
    """Load a motion UNet.

    Args:
      unet_dir: a ``UNetMotionModel`` folder (then ``motion_adapter`` must be None), or a
        ``UNet2DConditionModel`` folder (then ``motion_adapter`` is required).
      motion_adapter: a ``MotionAdapter`` folder, or an original AnimateDiff motion-module file
        (.ckpt / .safetensors with ``...motion_modules.N.temporal_transformer...`` keys).
      dtype: parameter and compute dtype of the model (float32, bfloat16, float16).
      motion_num_attention_heads: heads of the motion modules of an original file. Its adapter config
        is inferred from tensor shapes: block channels (from the GroupNorms), motion layers per block,
        transformer layers per motion module, whether a mid-block motion module exists (v2: yes,
        v3: no) and the maximum frame count (``pos_encoder.pe``: 24 for v1, 32 later). The head count
        cannot be inferred from shapes; every released AnimateDiff SD1.5 module uses 8.
      cache: reuse converted parameters from the orbax cache (``convert.cache.cached_load``).
      cache_dir: cache location (default ``$IEADAPT_JAX_CACHE`` or ``~/.cache/ieadapt_jax``).

    Raises:
      ConversionError: unreadable files, incompatible configs, or keys / shapes that do not fit.
    """
    unet_config = read_config(unet_dir)
    kind = unet_config.get("_class_name")
    files = weight_files(unet_dir)
    if kind == "UNetMotionModel":
        if motion_adapter is not None:
            raise ConversionError(f"{unet_dir} is a UNetMotionModel that already has motion modules; pass no motion adapter")
        config = _config(lambda: UNetMotionConfig.from_dict(unet_config), Path(unet_dir) / "config.json")
        adapter_tensors = None
    elif kind == "UNet2DConditionModel":
        if motion_adapter is None:
            raise ConversionError(f"{unet_dir} is a UNet2DConditionModel: also pass a MotionAdapter folder or motion-module file")
        adapter_config, adapter_files, adapter_tensors = _read_adapter(motion_adapter, motion_num_attention_heads)
        config = _config(lambda: UNetMotionConfig.from_unet2d(unet_config, adapter_config), f"{Path(unet_dir) / 'config.json'} + {motion_adapter}")
        files = files + adapter_files
    else:
        raise ConversionError(
            f"{unet_dir}/config.json has _class_name={kind!r}; expected UNetMotionModel or UNet2DConditionModel"
        )

    model = UNetMotionModel.abstract(config, dtype=dtype)

    def convert(target: UNetMotionModel) -> None:
        checkpoint = read_folder(unet_dir)
        tensors, sources = dict(checkpoint.tensors), dict(checkpoint.sources)
        if adapter_tensors is not None:
            extra, extra_sources = adapter_tensors()
            clash = sorted(set(extra) & set(tensors))
            if clash:
                raise ConversionError(f"the UNet folder {unet_dir} already holds motion-module keys, e.g. {clash[:3]}")
            tensors.update(extra)
            sources.update(extra_sources)
        fill_module(target, tensors, sources=sources, skip=(POSITION_BUFFER,), what="UNetMotionModel")

    if cache:
        cached_load(model, files, convert, cache_dir=cache_dir, version="unet_motion")
    else:
        convert(model)
    return model


def _config(build, where) -> UNetMotionConfig:
    """``build()``, its errors (an unsupported layout, a missing key, a value of the wrong type) turned into a
    :class:`ConversionError` naming the config files."""
    try:
        return build()
    except (ValueError, TypeError, KeyError) as e:
        raise ConversionError(f"{where}: cannot build a UNetMotionModel config: {e}") from None


def _read_adapter(path, heads: int):
    """(adapter config, weight files, a function returning (tensors, sources) in diffusers names)."""
    path = Path(path).expanduser()
    if path.is_dir():
        config = read_config(path)
        if config.get("_class_name", "MotionAdapter") != "MotionAdapter":
            raise ConversionError(f"{path}/config.json has _class_name={config['_class_name']!r}; expected MotionAdapter")

        def tensors():
            checkpoint = read_folder(path)
            return checkpoint.tensors, checkpoint.sources

        return config, weight_files(path), tensors
    original = read_state_dict_file(path)
    converted = from_original_motion_keys(original)
    config = infer_adapter_config(original, motion_num_attention_heads=heads)
    return config, [str(path)], lambda: (converted, {k: str(path) for k in converted})


def from_original_motion_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Original AnimateDiff motion-module keys -> diffusers MotionAdapter keys.

    ``.temporal_transformer`` is dropped, ``attention_blocks.0/1`` -> ``attn1/attn2``, ``norms.0/1`` ->
    ``norm1/norm2``, ``ff_norm`` -> ``norm3``; the ``pos_encoder.pe`` buffers are dropped (recomputed).
    A key outside ``*.motion_modules.*`` is an error naming it.
    """
    out = {}
    for key, value in state_dict.items():
        if not _MOTION_PREFIX.match(key):
            raise ConversionError(f"{key!r} is not a motion-module key; is this an AnimateDiff motion-module file?")
        if key.endswith(_ORIGINAL_POSITION):
            continue
        name = key
        for old, new in _ORIGINAL_TO_DIFFUSERS:
            name = name.replace(old, new)
        out[name] = value
    if not out:
        raise ConversionError("no motion-module weights found")
    return out


def to_original_motion_keys(state_dict: Mapping[str, np.ndarray], max_seq_length: int = 32) -> dict[str, np.ndarray]:
    """diffusers MotionAdapter keys -> the original AnimateDiff layout (the inverse of
    :func:`from_original_motion_keys`), writing the two ``pos_encoder.pe`` buffers of each block.

    diffusers ``pos_embed.pe`` buffers in the input are dropped and rewritten from the formula, with
    shape (1, max_seq_length, C).
    """

    out = {}
    block = re.compile(r"^(transformer_blocks\.\d+)\.(norm1|norm2|norm3|attn1|attn2)\.(.*)$")
    renames = {"norm1": "norms.0", "norm2": "norms.1", "norm3": "ff_norm", "attn1": "attention_blocks.0", "attn2": "attention_blocks.1"}
    for key, value in state_dict.items():
        match = _MOTION_PREFIX.match(key)
        if not match:
            raise ConversionError(f"{key!r} is not a motion-module key")
        owner, index, rest = match.groups()
        if rest.endswith(POSITION_BUFFER):
            blocks = rest[: -len(POSITION_BUFFER) - 1]
            pe = np.asarray(sinusoidal_positions(max_seq_length, int(value.shape[-1])))[None]  # [1, L, C]
            for attention in ("attention_blocks.0", "attention_blocks.1"):
                out[f"{owner}.motion_modules.{index}.temporal_transformer.{blocks}.{attention}.pos_encoder.pe"] = pe
            continue
        inner = block.match(rest)
        if inner:
            rest = f"{inner.group(1)}.{renames[inner.group(2)]}.{inner.group(3)}"
        out[f"{owner}.motion_modules.{index}.temporal_transformer.{rest}"] = value
    return out


def infer_adapter_config(state_dict: Mapping[str, np.ndarray], *, motion_num_attention_heads: int = 8) -> dict:
    """A MotionAdapter config for an original AnimateDiff motion-module state dict, from its shapes.

    Inferred: block_out_channels, motion_layers_per_block, motion_transformer_layers_per_block,
    use_motion_mid_block, motion_mid_block_layers_per_block, motion_transformer_layers_per_mid_block,
    motion_max_seq_length (from ``pos_encoder.pe``, default 32). Given: motion_num_attention_heads.
    """
    modules: dict[tuple[str, int], set[int]] = {}
    channels: dict[str, int] = {}
    max_len = None
    for key, value in state_dict.items():
        match = _MOTION_PREFIX.match(key)
        if not match:
            raise ConversionError(f"{key!r} is not a motion-module key; is this an AnimateDiff motion-module file?")
        owner, index, rest = match.group(1), int(match.group(2)), match.group(3)
        layers = modules.setdefault((owner, index), set())
        found = re.match(r"temporal_transformer\.transformer_blocks\.(\d+)\.", rest)
        if found:
            layers.add(int(found.group(1)))
        if rest == "temporal_transformer.norm.weight" and index == 0:
            channels[owner] = int(value.shape[0])
        if key.endswith(_ORIGINAL_POSITION):
            max_len = int(value.shape[1])
    down = sorted({int(o.split(".")[1]) for o, _ in modules if o.startswith("down_blocks.")})
    if not down or down != list(range(len(down))):
        raise ConversionError(f"motion-module file: down blocks {down} are not 0..n-1")
    missing = [f"down_blocks.{i}" for i in down if f"down_blocks.{i}" not in channels]
    if missing:
        raise ConversionError(f"motion-module file: no temporal_transformer.norm.weight for {missing}")

    def count(owner):
        return sum(1 for o, _ in modules if o == owner)

    def depth(owner):
        return len(modules[(owner, 0)])

    mid = "mid_block"
    use_mid = count(mid) > 0
    return {
        "_class_name": "MotionAdapter",
        "block_out_channels": [channels[f"down_blocks.{i}"] for i in down],
        "motion_layers_per_block": [count(f"down_blocks.{i}") for i in down],
        "motion_transformer_layers_per_block": [depth(f"down_blocks.{i}") for i in down],
        "motion_mid_block_layers_per_block": count(mid) if use_mid else 1,
        "motion_transformer_layers_per_mid_block": [len(modules[(mid, j)]) for j in range(count(mid))] if use_mid else 1,
        "motion_num_attention_heads": int(motion_num_attention_heads),
        "motion_norm_num_groups": 32,
        "motion_max_seq_length": max_len if max_len is not None else 32,
        "use_motion_mid_block": use_mid,
        "conv_in_channels": None,
    }
