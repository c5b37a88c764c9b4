"""A tiny random-weight AnimateDiff for demos, documentation examples and smoke tests (no download, no torch).

    components = ieadapt_jax.tiny_animatediff()
    result = ieadapt_jax.text_to_video(components, "a cat", num_frames=8, height=32, width=32, num_inference_steps=4)

Its videos are noise-like (the weights are random); it exercises every code path of the real model
(down/mid/up blocks, spatial, cross and temporal attention, VAE, CLIP text) at a size that runs in
seconds on a CPU. Sizes must be multiples of 4 (VAE factor 2 × UNet downsampling 2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .loading import AnimateDiffComponents
from .models.clip_text import CLIPTextConfig, CLIPTextModel
from .models.unet_motion import UNetMotionModel
from .models.unet_motion_config import UNetMotionConfig
from .models.vae import AutoencoderKL, AutoencoderKLConfig

# AnimateDiff's recommended DDIM (diffusers docs): linear betas 0.00085 -> 0.012, linspace spacing.
DDIM_CONFIG = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "linear", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
    "timestep_spacing": "linspace", "prediction_type": "epsilon",
}


def tiny_tokenizer():
    """A CLIP BPE tokenizer over lower-case letters with a few merges, built in memory (77 tokens max)."""
    from transformers import (  # deferred: transformers takes seconds to import
        CLIPTokenizer,  # deferred: transformers takes seconds to import
    )

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["!"]
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters])}
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_animatediff(seed: int = 0, dtype=jnp.float32) -> AnimateDiffComponents:
    """Random-weight tiny AnimateDiff components (UNet 16/32 channels, 2-level VAE, 2-layer CLIP text).

    Args:
        seed: seeds the parameter initialisation.
        dtype: parameter and compute dtype of every model.
    """
    tokenizer = tiny_tokenizer()

    abstract = nnx.eval_shape(lambda: _models(len(tokenizer), tokenizer.eos_token_id, dtype, nnx.Rngs(0)))
    unet, vae, text_encoder = random_init(abstract, seed)
    return AnimateDiffComponents(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler_config=dict(DDIM_CONFIG),
        path="<tiny random AnimateDiff>",
    )


def random_init(models: nnx.Module, seed: int) -> nnx.Module:
    """``models`` (abstract or not) with fresh random parameters drawn in numpy from ``seed``.

    Drawing on the host is faster than compiling a jitted initialiser for small models: kernels and
    embeddings N(0, 1/fan_in), biases 0, norm scales 1.
    """
    graphdef, state = nnx.split(models)
    rng = np.random.default_rng(seed)
    state = jax.tree_util.tree_map_with_path(lambda path, x: _initial_value(rng, path, x), state)
    return nnx.merge(graphdef, state)


def _initial_value(rng: np.random.Generator, path, x: jax.ShapeDtypeStruct) -> jax.Array:
    """One parameter's initial value; its kind is the last named key of its state path."""
    name = [str(k.key) for k in path if hasattr(k, "key")][-1]
    if name == "bias":
        value = np.zeros(x.shape)
    elif name == "scale":
        value = np.ones(x.shape)
    else:
        fan_in = int(np.prod(x.shape[:-1])) if name == "kernel" else x.shape[-1]
        value = rng.standard_normal(x.shape) / np.sqrt(fan_in)
    return jnp.asarray(value, x.dtype)


def _models(vocab_size: int, eos_token_id: int, dtype, rngs: nnx.Rngs):

    unet = UNetMotionModel(
        UNetMotionConfig(
            down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
            up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
            block_out_channels=(16, 32), layers_per_block=(1, 1), norm_num_groups=8, cross_attention_dim=32,
            num_attention_heads=(2, 2), transformer_layers_per_block=(1, 1),
            reverse_transformer_layers_per_block=(1, 1), motion_num_attention_heads=(2, 2),
            reverse_motion_num_attention_heads=(2, 2), temporal_transformer_layers_per_block=(1, 1),
            reverse_temporal_transformer_layers_per_block=(1, 1), use_motion_mid_block=True,
        ),
        dtype=dtype, rngs=rngs,
    )
    vae = AutoencoderKL(
        AutoencoderKLConfig(
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16), norm_num_groups=4,
        ),
        dtype=dtype, rngs=rngs,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, eos_token_id=eos_token_id,
        ),
        dtype=dtype, rngs=rngs,
    )
    return nnx.List([unet, vae, text_encoder])
