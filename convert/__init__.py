"""Checkpoint loaders and converters: PyTorch-format folders and files into Flax NNX modules."""
from .common import (
    CACHE_ENV,
    CONVERTER_VERSION,
    Checkpoint,
    ConversionError,
    cache_key,
    cached_load,
    default_cache_dir,
    fill_module,
    hash_file,
    load_folder,
    read_config,
    read_folder,
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
    "read_state_dict_file",
    "weight_files",
]
