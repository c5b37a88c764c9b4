"""Flax NNX ports of the models ieadapt-jax studies; parameter paths mirror diffusers' module paths."""
