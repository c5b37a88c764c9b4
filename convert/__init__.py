"""Checkpoint loaders and converters: PyTorch-format folders and files into Flax NNX modules.

Modules: :mod:`.readers` (folders and weight files, :class:`ConversionError`), :mod:`.fill` (the strict
converter), :mod:`.cache` (the orbax cache of converted parameters), and one converter per model family
(:mod:`.animatediff`, :mod:`.cogvideox`, :mod:`.folders`, :mod:`.metrics_weights`).
"""
from .cache import (
    CACHE_ENV,
    CONVERTER_VERSION,
    cache_key,
    cached_load,
    default_cache_dir,
    hash_file,
    load_folder,
)
from .fill import fill_module
from .readers import (
    Checkpoint,
    ConversionError,
    read_config,
    read_folder,
    read_model_config,
    read_state_dict_file,
    weight_files,
)

__all__ = [
    "CACHE_ENV",
    "CONVERTER_VERSION",
    "Checkpoint",
    "ConversionError",
    "cache_key",
    "cached_load",
    "default_cache_dir",
    "fill_module",
    "hash_file",
    "load_folder",
    "read_config",
    "read_folder",
    "read_model_config",
    "read_state_dict_file",
    "weight_files",
]
