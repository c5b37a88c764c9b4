"""The conversion cache: converted parameters stored with orbax-checkpoint, keyed by the sources' bytes.

:func:`cached_load` fills a module by a conversion function or from the cache; :func:`load_folder` is the
common path (read a ``save_pretrained`` folder, :func:`~.fill.fill_module` it, through the cache). The cache
lives in ``$IEADAPT_JAX_CACHE`` (default ``~/.cache/ieadapt_jax``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Collection, Iterable

import jax
import numpy as np
from flax import nnx

from .fill import fill_module, param_name
from .readers import read_folder, weight_files

# Bumped whenever a change to conversion would change the converted parameters of a cached entry.
CONVERTER_VERSION = "1"
CACHE_ENV = "IEADAPT_JAX_CACHE"


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
        [param_name(path), list(v.shape), str(np.dtype(v.dtype))]
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
    return {param_name(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _restore(module: nnx.Module, state_dir: Path) -> None:
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    # Restore onto the default device, wherever the entry was written (a CPU-written cache on a GPU host).
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {param_name(p): jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device) for p, v in flat}
    with ocp.StandardCheckpointer() as checkpointer:
        values = checkpointer.restore(state_dir.resolve(), abstract)
    nnx.update(module, nnx.from_flat_state([(p, v.replace(values[param_name(p)])) for p, v in flat]))


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
