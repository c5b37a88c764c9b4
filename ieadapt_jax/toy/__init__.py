"""The toy world: procedural shape videos with captions (:mod:`.world`) and weight-free metrics (:mod:`.metrics`).

A small text-to-video model trained on this world is the package's embedded default; these modules are its
data and its yardstick.
"""
from . import metrics, world
from .default import DEFAULT_MODEL, load_default
from .metrics import Prediction, classify
from .world import (
    WORLD_VERSION,
    Attributes,
    VocabularyError,
    caption,
    decode,
    encode,
    heldout_attributes,
    one_object,
    parse,
    render,
    render_batch,
    train_attributes,
)

__all__ = [
    "DEFAULT_MODEL",
    "WORLD_VERSION",
    "Attributes",
    "Prediction",
    "VocabularyError",
    "caption",
    "classify",
    "decode",
    "encode",
    "heldout_attributes",
    "load_default",
    "metrics",
    "one_object",
    "parse",
    "render",
    "render_batch",
    "train_attributes",
    "world",
]
