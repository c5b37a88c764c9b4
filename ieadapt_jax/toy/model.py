"""The toy text-to-video model: our motion UNet in pixel space, a small CLIP text encoder, and their snapshot.

    components = load_toy("toy-snapshot")                       # an AnimateDiffComponents
    result = ieadapt_jax.text_to_video(components, "a small red circle moving left on a white background",
                                       height=32, width=32, num_frames=16, guidance_scale=5.0)

**Model.** :class:`models.UNetMotionModel` with 3 input and output channels runs directly on videos
[B, 16, 32, 32, 3] scaled to [-1, 1] (no VAE: :class:`PixelSpace` stands in for one, an identity with the
VAE's interface, so the pipeline, sampling loop and editing code run unchanged). Three levels (32, 64, 64
channels at 32x32, 16x16, 8x8), spatial self-attention and cross-attention at 16x16 and in the 8x8 mid
block, temporal attention in every block and the mid block: the same site kinds and rewiring path as
AnimateDiff. The text encoder is :class:`models.CLIPTextModel` (causal, 2 layers,
width 64) over the toy world's word vocabulary; :class:`ToyTokenizer` gives it the tokenizer interface
the pipeline calls. SD's noise schedule (scaled_linear 0.00085 -> 0.012, 1000 steps) with ε-prediction, or
(:func:`scheduler_config`) v-prediction on that schedule rescaled to zero terminal SNR, as the shipped model
is trained; the scheduler config is DDIM with x0 clipped to [-1, 1] (pixel space) and says which.

**Snapshot.** :func:`save_toy` writes a diffusers-style pipeline folder: ``model_index.json``; ``unet/``
(UNetMotionModel config.json + safetensors in diffusers key names and layouts, written by
:func:`torch_state_dict`, the inverse of :func:`convert.fill.fill_module`'s rules); ``text_encoder/``
(transformers CLIPTextConfig config.json + safetensors, transformers 5 key names); ``scheduler/``; and
``toy.json`` (world version, vocabulary, training info). :func:`load_toy` reads it back with the loaders of
real checkpoints (:func:`convert.animatediff.load_unet_motion`, :func:`convert.folders.load_clip_text`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from flax import nnx

from ..convert.animatediff import load_unet_motion
from ..convert.folders import load_clip_text
from ..core.errors import IEAdaptError
from ..core.jsonfile import read_json_object
from ..loading import AnimateDiffComponents
from ..models.clip_text import CLIPTextConfig, CLIPTextModel
from ..models.layers import sinusoidal_positions
from ..models.unet_motion import UNetMotionModel
from ..models.unet_motion_config import (
    CROSS_DOWN,
    CROSS_UP,
    PLAIN_DOWN,
    PLAIN_UP,
    UNetMotionConfig,
)
from ..models.vae import LatentDistribution
from ..schedulers import load_scheduler_config
from ..tiny import random_init
from . import world

TOY_INFO = "toy.json"
FORMAT = "ieadapt-toy-1"
# SD's noise schedule; DDIM with linspace spacing starts at t = 999; x0 of a pixel-space video lies in [-1, 1].
SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": False,
    "steps_offset": 1, "timestep_spacing": "linspace", "prediction_type": "epsilon",
}
PREDICTIONS = ("epsilon", "v_prediction")


def scheduler_config(prediction: str = "epsilon", zero_terminal_snr: bool = False) -> dict:
    """The snapshot's scheduler config: :data:`SCHEDULER_CONFIG` predicting ``prediction``, with SD's ᾱ
    rescaled so that ᾱ_999 = 0 when ``zero_terminal_snr`` (Lin et al. 2024; it needs v-prediction)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    if zero_terminal_snr and prediction != "v_prediction":
        raise ValueError("zero terminal SNR needs prediction='v_prediction' (ε says nothing about x0 where ᾱ = 0)")
    return {**SCHEDULER_CONFIG, "prediction_type": prediction, "rescale_betas_zero_snr": bool(zero_terminal_snr)}


# CFG scale written into exported snapshots (higher breaks objects): benchmarks/README.md#the-toy-models-default-cfg
DEFAULT_GUIDANCE_SCALE = 1.25


class ToySnapshotError(IEAdaptError):
    """A folder that is not a toy-model snapshot, or one written for another toy world version."""

# ------------------------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class ToyArch:
    """Sizes of the toy UNet and text encoder (the rest is fixed by the toy world).

    ``cross_levels[i]``: whether UNet level i (and its mirror in the decoder) has spatial self- and
    cross-attention; the mid block always has them.
    """

    block_out_channels: tuple[int, ...]
    cross_levels: tuple[bool, ...]
    heads: int
    groups: int
    text_width: int
    text_layers: int

    def unet_config(self):
        """The :class:`models.UNetMotionConfig` of this architecture."""

        n = len(self.block_out_channels)
        ones, heads = (1,) * n, (self.heads,) * n
        return UNetMotionConfig(
            in_channels=3, out_channels=3,
            down_block_types=tuple(CROSS_DOWN if c else PLAIN_DOWN for c in self.cross_levels),
            up_block_types=tuple(CROSS_UP if c else PLAIN_UP for c in self.cross_levels[::-1]),
            block_out_channels=self.block_out_channels, layers_per_block=ones, norm_num_groups=self.groups,
            cross_attention_dim=self.text_width, num_attention_heads=heads, transformer_layers_per_block=ones,
            reverse_transformer_layers_per_block=ones, motion_num_attention_heads=heads,
            reverse_motion_num_attention_heads=heads, temporal_transformer_layers_per_block=ones,
            reverse_temporal_transformer_layers_per_block=ones, use_motion_mid_block=True,
        )

    def text_config(self):
        """The :class:`models.CLIPTextConfig` over the toy vocabulary (positions = the toy context length)."""

        # A tuple: the bare id 2 would select transformers' legacy "highest id" pooling rule.
        return CLIPTextConfig(
            vocab_size=len(world.VOCAB), hidden_size=self.text_width, intermediate_size=4 * self.text_width,
            num_hidden_layers=self.text_layers, num_attention_heads=self.heads,
            max_position_embeddings=world.CONTEXT_LENGTH, eos_token_id=(world.EOS_ID,),
        )


# "toy": attention at 16x16 and in the 8x8 mid block; 32x32 spatial attention would cost 2.5x the CPU time.
ARCHS = {
    "toy": ToyArch(block_out_channels=(32, 64, 64), cross_levels=(False, True, False), heads=4, groups=8,
                   text_width=64, text_layers=2),
    "tiny": ToyArch(block_out_channels=(8, 8), cross_levels=(False, True), heads=2, groups=4, text_width=16,
                    text_layers=1),
}


def build_models(arch: str, *, dtype=jnp.float32, seed: int = 0) -> nnx.List:
    """``nnx.List([unet, text_encoder])`` of architecture ``arch`` (a key of :data:`ARCHS`), initialised from seed.

    Initial values are drawn in numpy (eager ``jax.random`` compiles one program per parameter shape, which
    takes longer than training a few steps): kernels N(0, 1/fan_in), embeddings N(0, 1/width), biases 0,
    norm scales 1.
    """
    return random_init(abstract_models(arch, dtype=dtype), seed)


def abstract_models(arch: str, *, dtype=jnp.float32) -> nnx.List:
    """:func:`build_models` with abstract parameters (shapes only), e.g. for a compute-dtype graph."""

    spec = ARCHS[arch]

    def build() -> nnx.List:
        rngs = nnx.Rngs(0)
        return nnx.List([UNetMotionModel(spec.unet_config(), dtype=dtype, rngs=rngs),
                         CLIPTextModel(spec.text_config(), dtype=dtype, rngs=rngs)])

    return nnx.eval_shape(build)

# --------------------------------------------------------------------------- pipeline interface parts


@dataclasses.dataclass(frozen=True)
class PixelSpaceConfig:
    """What the pipeline reads from a VAE config: one pixel per latent, no latent scaling."""

    downscale: int = 1
    scaling_factor: float = 1.0
    force_upcast: bool = False


class PixelSpace(nnx.Module):
    """The identity "VAE" of a pixel-space model: latents are the frames themselves, in [-1, 1]."""

    def __init__(self):
        self.config = PixelSpaceConfig()

    def encode_frames(self, frames: jax.Array, **_) -> Any:
        """frames [F, H, W, 3] in [-1, 1] -> a point-mass LatentDistribution (mode = the frames)."""

        return LatentDistribution(frames, jnp.full_like(frames, -30.0))

    def decode_frames(self, latents: jax.Array, **_) -> jax.Array:
        """latents [F, H, W, 3] -> the same frames [F, H, W, 3] in [-1, 1]."""
        return latents


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A tokenizer's output: ``input_ids`` (a list of ids, or int32 [B, L] with ``return_tensors="np"``)."""

    input_ids: Any


class ToyTokenizer:
    """The toy world's word tokenizer (:func:`world.encode`) behind the transformers-tokenizer calls the
    pipeline makes: ``model_max_length`` and ``tokenizer(text or texts, padding=, max_length=, truncation=,
    return_tensors=)``. Unknown words raise :class:`world.VocabularyError`."""

    model_max_length = world.CONTEXT_LENGTH
    eos_token_id = world.EOS_ID
    pad_token_id = world.PAD_ID

    def __len__(self) -> int:
        return len(world.VOCAB)

    def __call__(self, text: str | Sequence[str], padding: bool | str = False, max_length: int | None = None,
                 truncation: bool = False, return_tensors: str | None = None) -> Tokens:
        """Ids with BOS and EOS; padded to the context length unless ``padding`` is False (then a list)."""
        if max_length not in (None, self.model_max_length):
            raise ValueError(f"the toy tokenizer pads to {self.model_max_length} tokens, not {max_length}")
        ids = world.encode(text)  # [L] or [B, L]
        if padding:
            return Tokens(ids if return_tensors == "np" else ids.tolist())
        if ids.ndim != 1:
            raise ValueError("unpadded ids are available for one text at a time")
        return Tokens(ids[ids != world.PAD_ID].tolist())

# -------------------------------------------------------------------------- parameters <-> diffusers


def torch_state_dict(module: nnx.Module, dtype=None) -> dict[str, np.ndarray]:
    """The module's parameters under PyTorch (diffusers/transformers) names and layouts, as numpy arrays.

    The inverse of :func:`convert.fill.fill_module`'s rules: Linear kernel (in, out) -> weight (out, in);
    Conv kernel (*spatial, in, out) -> weight (out, in, *spatial); norm scale and Embed embedding -> weight;
    other parameters keep their name and layout. ``dtype`` casts every array (e.g. ``ml_dtypes.bfloat16``).
    """
    owners = {".".join(str(p) for p in path): sub for path, sub in nnx.iter_modules(module)}
    out = {}
    for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        owner_path, attr = ".".join(str(p) for p in path[:-1]), str(path[-1])
        leaf, value = _torch_leaf(owners[owner_path], attr, np.asarray(variable.get_value()))
        out[f"{owner_path}.{leaf}" if owner_path else leaf] = value if dtype is None else value.astype(dtype)
    return out


def _torch_leaf(owner: nnx.Module, attr: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """(PyTorch leaf name, array in PyTorch layout) of parameter ``attr`` of ``owner``."""
    if isinstance(owner, nnx.Linear) and attr == "kernel":
        return "weight", value.T  # (in, out) -> (out, in)
    if isinstance(owner, nnx.Conv) and attr == "kernel":
        spatial = tuple(range(value.ndim - 2))
        return "weight", value.transpose((value.ndim - 1, value.ndim - 2) + spatial)  # (*S, I, O) -> (O, I, *S)
    if isinstance(owner, (nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm)) and attr == "scale":
        return "weight", value
    if isinstance(owner, nnx.Embed) and attr == "embedding":
        return "weight", value
    return attr, value


def _motion_position_buffers(unet) -> dict[str, np.ndarray]:
    """diffusers' ``pos_embed.pe`` buffers (1, max_seq_length, C) of every motion-module transformer block."""

    length = unet.config.motion_max_seq_length
    out = {}
    for path, sub in nnx.iter_modules(unet):
        name = ".".join(str(p) for p in path)
        if ".motion_modules." in name and getattr(sub, "temporal", False):
            channels = sub.norm1.scale.shape[0]
            out[f"{name}.pos_embed.pe"] = np.asarray(sinusoidal_positions(length, channels), np.float32)[None]
    return out


def unet_config_dict(config) -> dict:
    """A diffusers ``UNetMotionModel`` config.json dict for a :class:`models.UNetMotionConfig`."""
    fields = dataclasses.asdict(config)
    out = {"_class_name": "UNetMotionModel", "_diffusers_version": "0.42.1", "sample_size": world.HEIGHT,
           "act_fn": "silu"}
    for name, value in fields.items():
        out[name] = list(value) if isinstance(value, tuple) else value
    out["temporal_transformer_layers_per_mid_block"] = list(config.temporal_transformer_layers_per_mid_block)
    return out


def text_config_dict(config) -> dict:
    """A transformers ``CLIPTextConfig`` config.json dict for a :class:`models.CLIPTextConfig`."""
    fields = dataclasses.asdict(config)
    fields["eos_token_id"] = list(config.eos_token_id)
    return {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "bos_token_id": world.BOS_ID,
            "pad_token_id": world.PAD_ID, "projection_dim": config.hidden_size, "torch_dtype": "bfloat16", **fields}

# -------------------------------------------------------------------------------------- save / load


def save_toy(path: str | os.PathLike, unet, text_encoder, info: dict | None = None, *, dtype=jnp.bfloat16,
             scheduler: dict | None = None) -> Path:
    """Write a toy-model snapshot folder (module docstring) with parameters cast to ``dtype``.

    ``info`` (e.g. training settings) is stored in ``toy.json`` under "training"; ``scheduler`` is the
    scheduler config written (default :data:`SCHEDULER_CONFIG`, see :func:`scheduler_config`).
    """

    root = Path(path)
    np_dtype = np.dtype(dtype)
    for part in ("unet", "text_encoder", "scheduler", "tokenizer"):
        (root / part).mkdir(parents=True, exist_ok=True)
    unet_tensors = {**torch_state_dict(unet, np_dtype), **_motion_position_buffers(unet)}
    unet_tensors = {k: v.astype(np_dtype) for k, v in unet_tensors.items()}
    text_tensors = torch_state_dict(text_encoder, np_dtype)
    safetensors.numpy.save_file(_contiguous(unet_tensors), str(root / "unet" / "diffusion_pytorch_model.safetensors"))
    safetensors.numpy.save_file(_contiguous(text_tensors), str(root / "text_encoder" / "model.safetensors"))
    _write_json(root / "unet" / "config.json", unet_config_dict(unet.config))
    _write_json(root / "text_encoder" / "config.json", text_config_dict(text_encoder.config))
    _write_json(root / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG if scheduler is None else scheduler)
    _write_json(root / "tokenizer" / "vocab.json", {word: i for i, word in enumerate(world.VOCAB)})
    _write_json(root / "model_index.json", {
        "_class_name": "AnimateDiffPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNetMotionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
        "scheduler": ["diffusers", "DDIMScheduler"], "tokenizer": ["ieadapt_jax", "ToyTokenizer"],
        "vae": [None, None], "motion_adapter": [None, None], "feature_extractor": [None, None],
        "image_encoder": [None, None],
    })
    _write_json(root / TOY_INFO, {
        "format": FORMAT, "world_version": world.WORLD_VERSION, "vocab": list(world.VOCAB),
        "context_length": world.CONTEXT_LENGTH, "frames": world.FRAMES, "height": world.HEIGHT,
        "width": world.WIDTH, "pixel_space": True, "value_range": [-1.0, 1.0],
        "default_guidance_scale": DEFAULT_GUIDANCE_SCALE, "dtype": np_dtype.name, "training": info or {},
    })
    return root


def _contiguous(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _write_json(file: Path, value: dict) -> None:
    file.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_toy_info(path: str | os.PathLike, *, any_world: bool = False) -> dict:
    """The ``toy.json`` of a snapshot, checked: format, world version and vocabulary match this code.

    ``any_world`` accepts a snapshot of another world version with this vocabulary (its parameters are
    a starting point for training, not a model of the world this code draws).
    """

    root = Path(path)
    file = root / TOY_INFO
    if not file.is_file():
        raise ToySnapshotError(f"{root} is not a toy-model snapshot: it has no {TOY_INFO} "
                               "(write one with `python -m ieadapt_jax.toy export`)")
    info = read_json_object(file, ToySnapshotError)
    if info.get("format") != FORMAT:
        raise ToySnapshotError(f"{file}: format {info.get('format')!r}, this code reads {FORMAT!r}")
    if info.get("vocab") != list(world.VOCAB) or (info.get("world_version") != world.WORLD_VERSION and not any_world):
        raise ToySnapshotError(f"{file}: trained on toy world {info.get('world_version')!r}; this code draws "
                               f"{world.WORLD_VERSION!r} (retrain the model)")
    return info


def load_toy(path: str | os.PathLike, dtype=jnp.float32, *, cache: bool = True,
             cache_dir: str | os.PathLike | None = None, any_world: bool = False) -> AnimateDiffComponents:
    """Load a toy-model snapshot as pipeline components (``vae`` is :class:`PixelSpace`).

    The UNet and text encoder load through the loaders of real checkpoints, strictly. ``any_world``: see
    :func:`read_toy_info` (training starts from such a snapshot; nothing else should).

    Raises:
      ToySnapshotError: not a toy snapshot, or one of another toy world version.
      convert.ConversionError: missing or malformed model folders.
    """

    root = Path(path)
    read_toy_info(root, any_world=any_world)
    unet = load_unet_motion(root / "unet", dtype=dtype, cache=cache, cache_dir=cache_dir)
    text_encoder = load_clip_text(root / "text_encoder", dtype=dtype, cache=cache, cache_dir=cache_dir)
    return AnimateDiffComponents(unet=unet, vae=PixelSpace(), text_encoder=text_encoder, tokenizer=ToyTokenizer(),
                                 scheduler_config=load_scheduler_config(root / "scheduler"), path=str(root))


def param_count(module: nnx.Module) -> int:
    """The number of parameter entries of a module."""
    return sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param)))
