"""Loading a whole AnimateDiff pipeline snapshot from a local folder.

    pipe = ieadapt_jax.load_animatediff("animatediff-snapshot")        # diffusers AnimateDiffPipeline folder
    pipe = ieadapt_jax.load_animatediff("sd15-snapshot", motion_adapter="mm_sd_v15_v2.ckpt")

A snapshot is what diffusers' ``save_pretrained`` writes for a pipeline: ``model_index.json`` plus the
component folders ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/`` and ``scheduler/``. The
models load strictly through :mod:`convert` (and its orbax cache); the tokenizer is transformers'
``CLIPTokenizer`` read from the local folder; the scheduler stays a config dict.

    pipe = ieadapt_jax.load_cogvideox("cogvideox-5b-snapshot", dtype=jnp.bfloat16)   # diffusers CogVideoXPipeline folder

A CogVideoX snapshot has ``transformer/``, ``vae/``, ``text_encoder/`` (T5), ``tokenizer/`` and
``scheduler/``. Both component types expose ``denoiser`` (the UNet or the transformer), the model the
sampling loop calls.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp

from .convert import ConversionError, read_config, read_model_config
from .convert.animatediff import load_unet_motion
from .convert.cogvideox import (
    load_cogvideox_transformer,
    load_cogvideox_vae,
    load_t5_encoder,
)
from .convert.folders import load_clip_text, load_vae, read_vae_config
from .core.jsonfile import read_json_object
from .models.cogvideox_vae import AutoencoderKLCogVideoXConfig

if TYPE_CHECKING:
    from .models.clip_text import CLIPTextModel
    from .models.cogvideox_transformer import CogVideoXTransformer3DModel
    from .models.cogvideox_vae import AutoencoderKLCogVideoX
    from .models.t5 import T5EncoderModel
    from .models.unet_motion import UNetMotionModel
    from .models.vae import AutoencoderKL

MODEL_INDEX = "model_index.json"
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
COGVIDEOX_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
SCHEDULER_CONFIG = "scheduler_config.json"


@dataclasses.dataclass
class AnimateDiffComponents:
    """The loaded parts of an AnimateDiff pipeline snapshot.

    unet: the motion UNet; vae: the SD VAE; text_encoder: the CLIP text model; tokenizer: a
    transformers ``CLIPTokenizer``; scheduler_config: the scheduler's config.json as a dict (its
    ``_class_name`` names the diffusers scheduler); path: the snapshot folder.
    """

    unet: "UNetMotionModel"
    vae: "AutoencoderKL"
    text_encoder: "CLIPTextModel"
    tokenizer: Any
    scheduler_config: dict
    path: str

    @property
    def denoiser(self) -> "UNetMotionModel":
        """The model the sampling loop calls: here the motion UNet (CogVideoX's components: the transformer)."""
        return self.unet


def load_animatediff(
    path: str | os.PathLike,
    motion_adapter: str | os.PathLike | None = None,
    dtype=jnp.float32,
    *,
    vae_dtype=None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> AnimateDiffComponents:
    """Load an AnimateDiff (or SD1.5 + motion adapter) pipeline snapshot folder.

    Args:
      path: the snapshot folder (``model_index.json`` with unet/, vae/, text_encoder/, tokenizer/,
        scheduler/).
      motion_adapter: a ``MotionAdapter`` folder or an original AnimateDiff motion-module file
        (.ckpt / .safetensors), needed when ``unet/`` is a plain ``UNet2DConditionModel``. When it
        is None, such a snapshot's own ``motion_adapter/`` folder is used if it has one.
      dtype: parameter and compute dtype of the UNet and text encoder (and of the VAE, see below).
      vae_dtype: the VAE's dtype; by default ``dtype``, except float32 when ``dtype`` is float16 and
        the VAE config sets ``force_upcast`` (as diffusers does: the SD VAE overflows in float16).
      cache, cache_dir: the conversion cache (:func:`convert.cache.cached_load`).

    Raises:
      convert.ConversionError: a missing or malformed snapshot, component or weight file.
    """

    root = Path(path).expanduser()
    index = _read_model_index(root)
    _require_components(root, index, REQUIRED_COMPONENTS, "a snapshot")

    unet_dir = root / "unet"
    if motion_adapter is None and read_config(unet_dir).get("_class_name") == "UNet2DConditionModel":
        if _listed(index, "motion_adapter") and (root / "motion_adapter").is_dir():
            motion_adapter = root / "motion_adapter"
    unet = load_unet_motion(unet_dir, motion_adapter, dtype=dtype, cache=cache, cache_dir=cache_dir)

    if vae_dtype is None:
        upcast = read_vae_config(root / "vae").force_upcast
        vae_dtype = jnp.float32 if upcast and jnp.dtype(dtype) == jnp.float16 else dtype
    vae = load_vae(root / "vae", dtype=vae_dtype, cache=cache, cache_dir=cache_dir)
    text_encoder = load_clip_text(root / "text_encoder", dtype=dtype, cache=cache, cache_dir=cache_dir)
    return AnimateDiffComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_load_tokenizer(root / "tokenizer"),
        scheduler_config=_read_scheduler_config(root / "scheduler"),
        path=str(root),
    )


def _read_model_index(root: Path) -> dict:

    if not root.is_dir():
        raise ConversionError(f"pipeline snapshot folder {root} does not exist")
    file = root / MODEL_INDEX
    if not file.is_file():
        raise ConversionError(f"{root} has no {MODEL_INDEX}; is it a diffusers pipeline save_pretrained folder?")
    return read_json_object(file, ConversionError)


def _listed(index: dict, name: str) -> bool:
    """model_index.json lists a component as [library, class]; [null, null] means absent."""
    entry = index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[1] is not None


def _require_components(root: Path, index: dict, names: tuple[str, ...], what: str) -> None:
    """Raise ConversionError naming the component folders that model_index.json or the disk lacks."""

    missing = [name for name in names if not _listed(index, name) or not (root / name).is_dir()]
    if missing:
        raise ConversionError(f"{root} lacks the pipeline component folder(s) {missing}; {what} needs {', '.join(names)}")


def _load_tokenizer(folder: Path):
    from transformers import (  # deferred: transformers takes seconds to import
        CLIPTokenizer,  # deferred: transformers takes seconds to import
    )

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise ConversionError(f"cannot load the CLIP tokenizer from {folder}: {type(e).__name__}: {e}") from None


def _read_scheduler_config(folder: Path) -> dict:

    file = folder / SCHEDULER_CONFIG
    if not file.is_file():
        raise ConversionError(f"{folder} has no {SCHEDULER_CONFIG}")
    return read_json_object(file, ConversionError)


@dataclasses.dataclass
class CogVideoXComponents:
    """The loaded parts of a CogVideoX pipeline snapshot; the same role as :class:`AnimateDiffComponents`.

    transformer: the CogVideoX DiT (also ``denoiser``); vae: the causal 3D VAE; text_encoder: the T5
    encoder; tokenizer: a transformers ``T5Tokenizer`` whose ``model_max_length`` is the transformer's
    text length (226); scheduler_config: the scheduler's config.json as a dict; path: the snapshot folder.
    """

    transformer: "CogVideoXTransformer3DModel"
    vae: "AutoencoderKLCogVideoX"
    text_encoder: "T5EncoderModel"
    tokenizer: Any
    scheduler_config: dict
    path: str

    @property
    def denoiser(self) -> "CogVideoXTransformer3DModel":
        """The model the sampling loop calls: the transformer."""
        return self.transformer


def load_cogvideox(
    path: str | os.PathLike,
    dtype=jnp.float32,
    *,
    vae_dtype=None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> CogVideoXComponents:
    """Load a CogVideoX (2B or 5B) pipeline snapshot folder, as diffusers' ``CogVideoXPipeline.save_pretrained`` writes it.

    Args:
      path: the snapshot folder (``model_index.json`` with transformer/, vae/, text_encoder/, tokenizer/,
        scheduler/); sharded safetensors are read as they are.
      dtype: parameter and compute dtype of the transformer and the T5 encoder (and of the VAE, see below).
      vae_dtype: the VAE's dtype; by default ``dtype``, except float32 when ``dtype`` is float16 and the VAE
        config sets ``force_upcast``.
      cache, cache_dir: the conversion cache (:func:`convert.cache.cached_load`).

    Raises:
      convert.ConversionError: a missing or malformed snapshot, component or weight file.
    """

    root = Path(path).expanduser()
    index = _read_model_index(root)
    _require_components(root, index, COGVIDEOX_COMPONENTS, "a CogVideoX snapshot")
    transformer = load_cogvideox_transformer(root / "transformer", dtype=dtype, cache=cache, cache_dir=cache_dir)
    if vae_dtype is None:
        upcast = read_model_config(AutoencoderKLCogVideoXConfig.from_dict, root / "vae", "AutoencoderKLCogVideoX").force_upcast
        vae_dtype = jnp.float32 if upcast and jnp.dtype(dtype) == jnp.float16 else dtype
    vae = load_cogvideox_vae(root / "vae", dtype=vae_dtype, cache=cache, cache_dir=cache_dir)
    text_encoder = load_t5_encoder(root / "text_encoder", dtype=dtype, cache=cache, cache_dir=cache_dir)
    return CogVideoXComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_load_t5_tokenizer(root / "tokenizer", transformer.config.max_text_seq_length),
        scheduler_config=_read_scheduler_config(root / "scheduler"),
        path=str(root),
    )


def _load_t5_tokenizer(folder: Path, max_length: int):
    from transformers import (  # deferred: transformers takes seconds to import
        T5Tokenizer,  # deferred: transformers takes seconds to import
    )

    try:
        return T5Tokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=max_length)
    except (OSError, ValueError, TypeError, ImportError) as e:
        hint = "" if (folder / "tokenizer.json").is_file() else " (a folder with only spiece.model needs the sentencepiece package)"
        raise ConversionError(f"cannot load the T5 tokenizer from {folder}{hint}: {type(e).__name__}: {e}") from None
