"""The strict generic converter: :func:`fill_module` fills every ``nnx.Param`` of a Flax NNX module from a
PyTorch-named state dict.

Our parameter names mirror the diffusers/transformers module paths (lists are ``nnx.List``), so a source key
``a.b.0.c.weight`` belongs to the module at path ``a.b.0.c`` and the layout transform follows from that
module's type. Every key is used, every parameter filled, shapes and dtypes checked, and the module is left
untouched on failure.
"""
from __future__ import annotations

from typing import Callable, Collection, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .readers import ConversionError, key_listing


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


def param_name(path: Iterable) -> str:
    """A parameter's state path (``("down_blocks", 0, "conv", "kernel")``) as its dotted name."""
    return ".".join(str(p) for p in path)


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
    modules = {param_name(path): sub for path, sub in nnx.iter_modules(module)}
    flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    params = {param_name(path): path for path in flat}

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
            problems.append(f"{key!r}{where(key)} and {filled[path]!r} both fill parameter {param_name(path)!r}")
            continue
        filled[path] = key
        target = flat[path]
        value = _prepare(key, np.asarray(tensors[key]), transform, target, where(key), problems)
        if value is not None:
            staged[path] = value

    files = sorted(set(sources.values()))
    unfilled = [
        f"{param_name(p)} (wants source key {_expected_key(p, modules)!r})" for p in flat if p not in filled
    ]
    if unused:
        problems.append(f"{len(unused)} source key(s) fit no parameter: {key_listing(unused)}")
    if unfilled:
        searched = f" in {', '.join(files)}" if files else ""
        problems.append(f"{len(unfilled)} parameter(s) have no source key{searched}: {key_listing(unfilled)}")
    if problems:
        raise ConversionError(f"cannot load {what}:\n  " + "\n  ".join(problems))
    nnx.update(module, nnx.from_flat_state([(p, flat[p].replace(staged[p])) for p in flat]))


def _expected_key(path: tuple, modules: Mapping[str, nnx.Module]) -> str:
    owner_path = param_name(path[:-1])
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
