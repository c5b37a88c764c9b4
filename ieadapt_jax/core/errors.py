"""The one error base of ieadapt-jax.

Every mistake a user can make (a bad file, key, shape, option or combination) raises a subclass of
:class:`IEAdaptError` whose message names what is at fault. The command-line front door
(:mod:`ieadapt_jax.cli`) catches this base alone and prints ``error: <message>`` with exit status 2; any
other exception is a bug and keeps its traceback. The base derives from ``ValueError`` so code written
against the earlier per-module errors keeps working.
"""
from __future__ import annotations


class IEAdaptError(ValueError):
    """Base of every user-facing ieadapt-jax error."""


class ConfigError(IEAdaptError):
    """A model configuration (a checkpoint's config.json, or arguments) that the port does not support."""


class AttentionError(IEAdaptError):
    """Inputs of the attention core that do not fit together (shapes, dtypes, backend)."""
