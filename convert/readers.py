"""Reading PyTorch-format checkpoints: ``save_pretrained`` folders and single weight files.

- :func:`read_folder`: a ``save_pretrained`` folder (config.json + safetensors, sharded or not) as a
  :class:`Checkpoint`; :func:`weight_files` lists the files it would read;
- :func:`read_state_dict_file`: one ``.safetensors`` / ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin`` file;
- :func:`read_config` / :func:`read_model_config`: a folder's config.json, and a model config built from it.

Safetensors files are read with ``safetensors.numpy``; torch is imported only for pickled files. Every problem
raises :class:`ConversionError` naming the file (and key).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Mapping

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

from ..core.errors import IEAdaptError
from ..core.jsonfile import read_json_object

CONFIG_NAME = "config.json"
# Single-file weight names, in order of preference, as written by save_pretrained.
SAFETENSORS_NAMES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
PICKLE_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Safetensors dtypes numpy does not know; read raw and viewed with ml_dtypes.
_RAW_DTYPES = {
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
}
_MAX_LISTED = 20


class ConversionError(IEAdaptError):
    """A checkpoint cannot be read or does not fit the model; the message names the key and file."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder read into memory.

    config: the parsed config.json. tensors: key -> array. sources: key -> file it came from.
    files: the weight files read, in reading order. path: the folder.
    """

    path: str
    config: dict
    tensors: dict[str, np.ndarray]
    sources: dict[str, str]
    files: list[str]


def read_config(path: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a checkpoint folder (clear errors for a missing or broken file)."""
    folder = _existing_folder(path)
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise ConversionError(f"{folder} has no {CONFIG_NAME} (it holds: {present}); is this a save_pretrained folder?")
    return read_json_object(config_file, ConversionError)


def read_model_config(build: Callable[[dict], object], path: str | os.PathLike, what: str):
    """``build(config.json of path)``, its errors (a missing key, a value of the wrong type) turned into a
    :class:`ConversionError` naming the file and the model."""
    config = read_config(path)
    try:
        return build(config)
    except (ValueError, TypeError, KeyError) as e:
        raise ConversionError(f"{Path(path) / CONFIG_NAME}: cannot build a {what} config: {e}") from None


def weight_files(path: str | os.PathLike, *, variant: str | None = None) -> list[str]:
    """The weight files :func:`read_folder` would read, without reading them (e.g. for cache keys)."""
    return [str(f) for f, _ in _weight_files(_existing_folder(path), variant)]


def read_folder(path: str | os.PathLike, *, variant: str | None = None) -> Checkpoint:
    """Read a ``save_pretrained`` folder: config.json plus its weights.

    Weights are looked for in this order: a sharded ``*.safetensors.index.json`` (every shard it names),
    ``model.safetensors``, ``diffusion_pytorch_model.safetensors``, then the pickled ``pytorch_model.bin``
    / ``diffusion_pytorch_model.bin`` (loaded with torch, ``weights_only=True``). ``variant`` (e.g.
    "fp16") selects ``model.fp16.safetensors`` style names.
    """
    folder = _existing_folder(path)
    config = read_config(folder)
    files = _weight_files(folder, variant)
    tensors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for file, expected in files:
        part = read_state_dict_file(file)
        if expected is not None:
            _check_shard(file, part, expected)
        for key, value in part.items():
            if key in tensors:
                raise ConversionError(f"key {key!r} appears in both {sources[key]} and {file}")
            tensors[key] = value
            sources[key] = str(file)
    return Checkpoint(str(folder), config, tensors, sources, [str(f) for f, _ in files])


def read_state_dict_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read one weight file into key -> numpy array.

    ``.safetensors`` is read with safetensors' numpy backend (bf16 / fp8 via ml_dtypes). ``.ckpt``,
    ``.pt``, ``.pth`` and ``.bin`` are loaded with ``torch.load(map_location="cpu", weights_only=True)``,
    so a checkpoint can never run code; a top-level ``state_dict`` entry is unwrapped.
    """
    file = Path(path)
    if not file.is_file():
        raise ConversionError(f"weight file {file} does not exist")
    if file.name.endswith(".safetensors"):
        return _read_safetensors(file)
    if file.suffix in PICKLE_SUFFIXES:
        return _read_pickle(file)
    raise ConversionError(
        f"cannot read {file}: unknown weight format {file.suffix!r} (expected .safetensors, {', '.join(PICKLE_SUFFIXES)})"
    )


def key_listing(items: list[str]) -> str:
    """Keys for an error message: the first ``_MAX_LISTED`` quoted, then how many more; "none" if empty."""
    if not items:
        return "none"
    shown = ", ".join(repr(i) for i in items[:_MAX_LISTED])
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _existing_folder(path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ConversionError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise ConversionError(f"{folder} is a file; expected a checkpoint folder (config.json + weights)")
    return folder


def _weight_files(folder: Path, variant: str | None) -> list[tuple[Path, set[str] | None]]:
    """[(file, keys the index says it holds, or None)] for the folder's weights."""

    def named(name: str) -> str:
        if variant is None:
            return name
        stem, _, ext = name.partition(".")
        return f"{stem}.{variant}.{ext}"

    for base in SAFETENSORS_NAMES:
        index = folder / named(base + ".index.json")
        if index.is_file():
            return _index_files(folder, index)
    for base in SAFETENSORS_NAMES + PICKLE_NAMES:
        file = folder / named(base)
        if file.is_file():
            return [(file, None)]
    wanted = ", ".join(named(n) for n in SAFETENSORS_NAMES + PICKLE_NAMES)
    present = ", ".join(sorted(p.name for p in folder.iterdir()))
    raise ConversionError(f"{folder} has no weight file (looked for {wanted} and sharded *.index.json); it holds: {present}")


def _index_files(folder: Path, index: Path) -> list[tuple[Path, set[str]]]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConversionError(f"cannot read the shard index {index}: {type(e).__name__}: {e}") from None
    by_file: dict[str, set[str]] = {}
    for key, name in weight_map.items():
        by_file.setdefault(name, set()).add(key)
    missing = [name for name in by_file if not (folder / name).is_file()]
    if missing:
        raise ConversionError(f"shard index {index} names files that are not in {folder}: {sorted(missing)}")
    return [(folder / name, keys) for name, keys in sorted(by_file.items())]


def _check_shard(file: Path, part: Mapping[str, np.ndarray], expected: set[str]) -> None:
    absent = sorted(expected - part.keys())
    extra = sorted(part.keys() - expected)
    if absent or extra:
        raise ConversionError(
            f"shard {file} does not match its index: missing {key_listing(absent)}; not in the index {key_listing(extra)}"
        )


def _safetensors_header(file: Path) -> tuple[dict, int]:
    """(header, offset of the data section) of a safetensors file: 8-byte length, JSON header, data."""
    try:
        with open(file, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= min(100_000_000, file.stat().st_size - 8):
                raise ValueError(f"header length {size} is impossible")
            header = json.loads(f.read(size))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConversionError(f"cannot read {file}: not a safetensors file ({e})") from None
    return header, 8 + size


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:

    header, data_start = _safetensors_header(file)
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(file), framework="numpy") as f:
            for key in f.keys():
                info = header[key]
                raw = _RAW_DTYPES.get(info["dtype"])
                if raw is None:
                    out[key] = f.get_tensor(key)
                else:
                    begin, end = info["data_offsets"]
                    data = np.fromfile(file, dtype=np.uint8, count=end - begin, offset=data_start + begin)
                    out[key] = data.view(raw).reshape(info["shape"])
    except (SafetensorError, OSError, TypeError, ValueError) as e:
        raise ConversionError(f"cannot read {file}: {type(e).__name__}: {e}") from None
    return out


def _read_pickle(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # deferred: torch is a test-only dependency
    except ImportError:
        raise ConversionError(
            f"{file} is a pickled PyTorch checkpoint; reading it needs torch (pip install torch), "
            "or convert it to .safetensors first"
        ) from None
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise ConversionError(
            f"cannot load {file} with torch.load(weights_only=True): {type(e).__name__}: {e}. "
            "Files holding anything but tensors are refused so that loading never runs code."
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{file} holds a {type(obj).__name__}, not a state dict of tensors")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{file}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key] = _torch_to_numpy(value)
    return out


def _torch_to_numpy(t) -> np.ndarray:
    import torch  # deferred: torch is a test-only dependency

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
