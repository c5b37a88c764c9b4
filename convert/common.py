"""Reading PyTorch-format checkpoints and filling Flax NNX modules from them, strictly.

Our parameter names mirror the diffusers/transformers module paths (lists are ``nnx.List``), so a
source key ``a.b.0.c.weight`` belongs to the module at path ``a.b.0.c`` and the layout transform
follows from that module's type (:func:`fill_module`). The pieces:

- :func:`read_folder`: a ``save_pretrained`` folder (config.json + safetensors, sharded or not) as a
  :class:`Checkpoint`;
- :func:`read_state_dict_file`: one ``.safetensors`` / ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin`` file;
- :func:`fill_module`: the strict generic converter (every key used, every parameter filled, shapes
  and dtypes checked, the module untouched on failure);
- :func:`cached_load`: an orbax-checkpoint cache of converted parameters keyed by the sources' bytes.

Safetensors files are read with ``safetensors.numpy``; torch is imported only for pickled files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Collection, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from ..core.errors import IEAdaptError
from ..core.jsonfile import read_json_object

CONFIG_NAME = "config.json"
# Single-file weight names, in order of preference, as written by save_pretrained.
SAFETENSORS_NAMES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
PICKLE_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Bumped whenever a change to conversion would change the converted parameters of a cached entry.
CONVERTER_VERSION = "1"
CACHE_ENV = "IEADAPT_JAX_CACHE"
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
            f"shard {file} does not match its index: missing {_listing(absent)}; not in the index {_listing(extra)}"
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

# ---------------------------------------------------------------------------------------------------
# The strict converter.


def _identity(w, shape):
    return w


def _linear_kernel(w, shape):
    """torch Linear (out, in) -> kernel (in, out); a 1x1 conv weight (out, in, 1, 1) is accepted too."""
    if w.ndim > 2 and all(s == 1 for s in w.shape[2:]):
        w = w.reshape(w.shape[:2])  # (O, I, 1, 1) -> (O, I)
    return w.T if w.ndim == 2 else w


def _conv_kernel(w, shape):
    """torch (O, I, *spatial) -> (*spatial, I, O); a Linear weight (O, I) fills a 1x1 conv."""
    if w.ndim == 2 and len(shape) > 2 and all(s == 1 for s in shape[:-2]):
        return w.T.reshape(shape)  # (O, I) -> (1, .., 1, I, O)
    if w.ndim < 3:
        return w
    return w.transpose(tuple(range(2, w.ndim)) + (1, 0))


_NORMS = (nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm)


def _leaf_rule(owner: nnx.Module, leaf: str) -> tuple[str, Callable]:
    """(parameter attribute, transform) for source leaf ``leaf`` ("weight", "bias", ...) of ``owner``."""
    if leaf == "weight":
        if isinstance(owner, nnx.Linear):
            return "kernel", _linear_kernel
        if isinstance(owner, nnx.Conv):
            return "kernel", _conv_kernel
        if isinstance(owner, _NORMS):
            return "scale", _identity
        if isinstance(owner, nnx.Embed):
            return "embedding", _identity
    return leaf, _identity


def _source_leaf(owner: nnx.Module, param: str) -> str:
    """The source leaf name that fills parameter attribute ``param`` of ``owner`` (inverse of _leaf_rule)."""
    for leaf in ("weight", param):
        if _leaf_rule(owner, leaf)[0] == param:
            return leaf
    return param


def _path_str(path: Iterable) -> str:
    return ".".join(str(p) for p in path)


def _listing(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(repr(i) for i in items[:_MAX_LISTED])
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _skipped(key: str, skip: Collection[str]) -> bool:
    return any(key == s or key.endswith("." + s) for s in skip)


def fill_module(
    module: nnx.Module,
    tensors: Mapping[str, np.ndarray],
    *,
    sources: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
    rename: Callable[[str], str | None] | None = None,
    what: str = "model",
) -> None:
    """Fill every ``nnx.Param`` of ``module`` from a PyTorch-named state dict, strictly.

    A source key ``a.b.0.c.<leaf>`` (after ``rename``) fills a parameter of the submodule at path
    ``a.b.0.c``; the parameter and layout follow from that submodule's type:

    - ``nnx.Linear``: weight -> kernel, transposed (a 1x1 conv weight (O, I, 1, 1) is accepted too);
    - ``nnx.Conv``: weight -> kernel, OI[D]HW -> [D]HWIO (a Linear weight fills a 1x1 conv);
    - ``nnx.LayerNorm`` / ``GroupNorm`` / ``RMSNorm``: weight -> scale; ``nnx.Embed``: weight -> embedding;
    - anything else, and ``bias``: the leaf name is the parameter name, layout unchanged.

    Args:
      module: the target (concrete, or abstract from ``nnx.eval_shape``).
      tensors: source key -> array. sources: key -> file it came from, for error messages.
      skip: keys not to convert (buffers such as ``position_ids``, ``pos_embed.pe``); an entry also
        matches any key ending in ``"." + entry``.
      rename: maps a source key to our key (applied before matching), or to None to skip the key.
      what: the model's name in error messages.

    Raises:
      ConversionError: listing every unused source key, every unfilled parameter, and every shape
        or dtype mismatch, each with the key, both shapes and the source file. ``module`` is left
        unchanged when anything is wrong: values are staged and written with ``nnx.update`` at the end.
    """
    sources = sources or {}
    modules = {_path_str(path): sub for path, sub in nnx.iter_modules(module)}
    flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    params = {_path_str(path): path for path in flat}

    def where(key: str) -> str:
        return f" (from {sources[key]})" if key in sources else ""

    filled: dict[tuple, str] = {}
    staged: dict[tuple, jax.Array] = {}
    unused: list[str] = []
    problems: list[str] = []
    for key in sorted(tensors):
        if _skipped(key, skip):
            continue
        name = rename(key) if rename is not None else key
        if name is None:
            continue
        owner_path, _, leaf = name.rpartition(".")
        owner = modules.get(owner_path)
        if owner is None:
            unused.append(f"{key}{where(key)}")
            continue
        attr, transform = _leaf_rule(owner, leaf)
        path = params.get(f"{owner_path}.{attr}" if owner_path else attr)
        if path is None:
            unused.append(f"{key}{where(key)}")
            continue
        if path in filled:
            problems.append(f"{key!r}{where(key)} and {filled[path]!r} both fill parameter {_path_str(path)!r}")
            continue
        filled[path] = key
        target = flat[path]
        value = _prepare(key, np.asarray(tensors[key]), transform, target, where(key), problems)
        if value is not None:
            staged[path] = value

    files = sorted(set(sources.values()))
    unfilled = [
        f"{_path_str(p)} (wants source key {_expected_key(p, modules)!r})" for p in flat if p not in filled
    ]
    if unused:
        problems.append(f"{len(unused)} source key(s) fit no parameter: {_listing(unused)}")
    if unfilled:
        searched = f" in {', '.join(files)}" if files else ""
        problems.append(f"{len(unfilled)} parameter(s) have no source key{searched}: {_listing(unfilled)}")
    if problems:
        raise ConversionError(f"cannot load {what}:\n  " + "\n  ".join(problems))
    nnx.update(module, nnx.from_flat_state([(p, flat[p].replace(staged[p])) for p in flat]))


def _expected_key(path: tuple, modules: Mapping[str, nnx.Module]) -> str:
    owner_path = _path_str(path[:-1])
    owner = modules.get(owner_path)
    leaf = _source_leaf(owner, str(path[-1])) if owner is not None else str(path[-1])
    return f"{owner_path}.{leaf}" if owner_path else leaf


def _prepare(key, w, transform, target, where, problems) -> jax.Array | None:
    """The source array in the target's layout and dtype, or None (with a problem noted)."""
    shape, dtype = tuple(target.shape), np.dtype(target.dtype)
    src_float = jnp.issubdtype(w.dtype, jnp.floating)
    dst_float = jnp.issubdtype(dtype, jnp.floating)
    if src_float != dst_float:
        problems.append(f"{key!r}{where}: dtype {w.dtype} cannot fill a {dtype} parameter")
        return None
    moved = transform(w, shape)
    if tuple(moved.shape) != shape:
        layout = "" if moved.shape == w.shape else f" (as {tuple(moved.shape)} in our layout)"
        problems.append(f"{key!r}{where}: source shape {tuple(w.shape)}{layout} != parameter shape {shape}")
        return None
    return jnp.asarray(np.ascontiguousarray(moved).astype(dtype, copy=False))

# ---------------------------------------------------------------------------------------------------
# The conversion cache.


def load_folder(
    module: nnx.Module,
    path: str | os.PathLike,
    *,
    skip: Collection[str] = (),
    rename: Callable[[str], str | None] | None = None,
    what: str = "model",
    variant: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> bool:
    """Fill ``module`` from a ``save_pretrained`` folder: :func:`read_folder` then :func:`fill_module`,
    through :func:`cached_load` unless ``cache`` is False. ``module`` may be abstract
    (``nnx.eval_shape``). Returns True when the parameters came from the cache."""

    def convert(target: nnx.Module) -> None:
        checkpoint = read_folder(path, variant=variant)
        fill_module(
            target, checkpoint.tensors, sources=checkpoint.sources, skip=skip, rename=rename, what=f"{what} from {path}"
        )

    if not cache:
        convert(module)
        return False
    return cached_load(module, weight_files(path, variant=variant), convert, cache_dir=cache_dir, version=what)


def default_cache_dir() -> Path:
    """``$IEADAPT_JAX_CACHE`` if set, else ``~/.cache/ieadapt_jax``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ieadapt_jax").expanduser()


def hash_file(path: str | os.PathLike, chunk_bytes: int = 8 << 20) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(module: nnx.Module, source_files: Iterable[str | os.PathLike], version: str = "") -> str:
    """Key of a converted-parameter entry: the sources' content hashes, the converter versions, and
    the target's class and parameter structure (paths, shapes, dtypes), so a dtype change misses."""
    structure = [
        [_path_str(path), list(v.shape), str(np.dtype(v.dtype))]
        for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))
    ]
    payload = {
        "converter": CONVERTER_VERSION,
        "version": version,
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "structure": structure,
        "files": [hash_file(f) for f in source_files],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


_META = "meta.json"
_STATE = "state"
_STALE_TMP_SECONDS = 24 * 3600


def cached_load(
    module: nnx.Module,
    source_files: Iterable[str | os.PathLike],
    convert_fn: Callable[[nnx.Module], None],
    *,
    cache_dir: str | os.PathLike | None = None,
    version: str = "",
) -> bool:
    """Fill ``module``'s parameters by ``convert_fn(module)``, or from the cache if converted before.

    The entry's key is :func:`cache_key` (content hash of every source file, ``version`` and the target
    structure). A miss runs ``convert_fn`` (which fills ``module`` in place, e.g. with
    :func:`fill_module`) and stores the resulting ``nnx.Param`` state with orbax-checkpoint; a hit
    restores it without calling ``convert_fn``. Entries are written into a temporary folder and then
    renamed into place, so a killed process never leaves a partial entry; a cache that cannot be
    written only warns. ``cache_dir`` defaults to :func:`default_cache_dir`.

    Returns:
      True on a cache hit, False when ``convert_fn`` ran.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(module, source_files, version)
    entry = root / key
    if (entry / _META).is_file():
        try:
            _restore(module, entry / _STATE)
            return True
        except Exception as e:  # a corrupt or foreign entry: convert again and replace it
            warnings.warn(f"ignoring unreadable cache entry {entry}: {type(e).__name__}: {e}", stacklevel=2)
    convert_fn(module)
    try:
        _store(module, root, key)
    except Exception as e:  # the cache only saves time: a failed write must not fail the load
        warnings.warn(f"could not write the conversion cache in {root}: {type(e).__name__}: {e}", stacklevel=2)
    return False


def _flat_params(module: nnx.Module) -> dict[str, jax.Array]:
    return {_path_str(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _restore(module: nnx.Module, state_dir: Path) -> None:
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    # Restore onto the default device, wherever the entry was written (a CPU-written cache on a GPU host).
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {_path_str(p): jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device) for p, v in flat}
    with ocp.StandardCheckpointer() as checkpointer:
        values = checkpointer.restore(state_dir.resolve(), abstract)
    nnx.update(module, nnx.from_flat_state([(p, v.replace(values[_path_str(p)])) for p, v in flat]))


def _store(module: nnx.Module, root: Path, key: str) -> None:
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; an entry is as readable as the cache folder
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save((tmp / _STATE).resolve(), _flat_params(module))
            checkpointer.wait_until_finished()
        (tmp / _META).write_text(json.dumps({"key": key, "converter": CONVERTER_VERSION, "time": time.time()}))
        entry = root / key
        if entry.exists():  # an entry without meta.json (or a concurrent writer's): replace it whole
            shutil.rmtree(entry, ignore_errors=True)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_tmp(root: Path) -> None:
    """Delete temporary folders that a killed writer left behind more than a day ago."""
    now = time.time()
    for tmp in root.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue
