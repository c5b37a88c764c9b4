"""Flax NNX ports of the models ieadapt-jax studies; parameter paths mirror diffusers' module paths."""
from .clip_text import CLIPTextConfig, CLIPTextModel
from .cogvideox_tiling import Tiling
from .cogvideox_transformer import (
    CogVideoXTransformer3DModel,
    CogVideoXTransformerConfig,
)
from .cogvideox_vae import AutoencoderKLCogVideoX, AutoencoderKLCogVideoXConfig
from .t5 import T5Config, T5EncoderModel
from .unet_motion import UNetMotionModel
from .unet_motion_config import UNetMotionConfig
from .vae import AutoencoderKL, AutoencoderKLConfig

__all__ = [
    "AutoencoderKL",
    "AutoencoderKLConfig",
    "AutoencoderKLCogVideoX",
    "AutoencoderKLCogVideoXConfig",
    "CLIPTextConfig",
    "CLIPTextModel",
    "CogVideoXTransformer3DModel",
    "CogVideoXTransformerConfig",
    "T5Config",
    "T5EncoderModel",
    "Tiling",
    "UNetMotionConfig",
    "UNetMotionModel",
]
