"""Flax NNX ports of the models ieadapt-jax studies; parameter paths mirror diffusers' module paths."""
from .unet_motion import UNetMotionConfig, UNetMotionModel, make_forward

__all__ = ["UNetMotionConfig", "UNetMotionModel", "make_forward"]
