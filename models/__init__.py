"""Flax NNX ports of the models ieadapt-jax studies; parameter paths mirror diffusers' module paths."""
from .clip_text import CLIPTextConfig, CLIPTextModel
from .unet_motion import UNetMotionConfig, UNetMotionModel, make_forward
from .vae import AutoencoderKL, AutoencoderKLConfig

__all__ = [
    "AutoencoderKL",
    "AutoencoderKLConfig",
    "CLIPTextConfig",
    "CLIPTextModel",
    "UNetMotionConfig",
    "UNetMotionModel",
    "make_forward",
]
