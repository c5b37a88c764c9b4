"""The jit boundary: split a model into a static structure and its arrays once, compile pure functions of them.

Flax NNX modules are JAX pytrees, so the split needs nothing beyond ``jax.tree_util``: the structure (the
module classes, configs, site tables: everything that is not an array) is static and hashable, the
arrays are the traced state. A compiled function of (structure, state, inputs) is cached on the
structure, so rebuilding the model from the same checkpoint does not recompile, and changing only the
state's values (other weights of the same shapes) never does.

    forward, state = make_forward(unet, record="self")     # once
    eps, record = forward(state, sample, timesteps, text, rewiring)

    @jit_method
    def embed(text_encoder, ids):                           # compiled once per architecture
        return text_encoder.prompt_embeds(ids)
    states = embed(text_encoder, ids)
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax

_STATUS: list[Callable[[str], None]] = []  # where status lines go (empty: nowhere); see set_status


def set_status(callback: Callable[[str], None] | None) -> None:
    """Send status lines ("compiling the sampling loop (first call only)...") to ``callback``, or nowhere (None).

    The command line sends them to stderr; the library is silent by default."""
    _STATUS.clear()
    if callback is not None:
        _STATUS.append(callback)


class Structure:
    """The static part of a split module: its pytree definition and its parameter names, hashed and compared
    by value."""

    __slots__ = ("treedef", "names", "_hash")

    def __init__(self, treedef, names: tuple[str, ...]):
        self.treedef = treedef
        self.names = names
        self._hash = hash((treedef, names))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, Structure) and self.names == other.names and self.treedef == other.treedef


def split(module) -> tuple[Structure, dict[str, jax.Array]]:
    """(structure, state): the module's static structure and its arrays by parameter name.

    Names are the module paths joined with dots, as diffusers names them (``down_blocks.0.resnets.1.conv1.kernel``),
    so sharding rules and conversions can select parameters by name.
    """
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(module)
    names = tuple(_name(path) for path, _ in with_paths)
    return Structure(treedef, names), dict(zip(names, (leaf for _, leaf in with_paths)))


def merge(structure: Structure, state: dict) -> Any:
    """The module rebuilt from :func:`split`'s parts (inside a trace: on the traced arrays)."""
    return jax.tree_util.tree_unflatten(structure.treedef, [state[name] for name in structure.names])


class ModuleFunction:
    """A function of a module compiled as a pure function of the module's arrays; see :func:`jit_method`."""

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...], announce: str | None = None):
        self.fn = fn
        self.announce = announce
        self._seen: set = set()
        functools.update_wrapper(self, fn)

        params = list(inspect.signature(fn).parameters)[1:]  # after the module
        positions = tuple(2 + params.index(name) for name in static_argnames if name in params)

        @functools.partial(jax.jit, static_argnums=(0,) + positions, static_argnames=tuple(static_argnames))
        def pure(structure, state, *args, **kwargs):
            return fn(merge(structure, state), *args, **kwargs)

        self.pure = pure

    def __call__(self, module, *args, **kwargs):
        """Split ``module`` and call the compiled function on its arrays."""
        structure, state = split(module)
        if self.announce is not None and _STATUS:
            self._status(structure, state, args, kwargs)
        return self.pure(structure, state, *args, **kwargs)

    def _status(self, structure, state, args, kwargs) -> None:
        """A status line before the call that compiles: the first with this structure, these shapes and statics."""
        leaves, treedef = jax.tree_util.tree_flatten((state, args, kwargs))
        key = (structure, treedef, tuple((getattr(x, "shape", None), str(getattr(x, "dtype", "")))
                                         if hasattr(x, "shape") else x for x in leaves))
        if key not in self._seen:
            self._seen.add(key)
            _STATUS[-1](f"compiling {self.announce} (first call only)...")


def jit_method(fn: Callable | None = None, *, static_argnames: tuple[str, ...] = (), announce: str | None = None):
    """Decorator: compile ``fn(module, *args, **kwargs)`` as a pure function of the module's arrays.

    ``f = jit_method(fn)``; ``f(module, *args)`` splits the module and runs the compiled function, which is
    cached on the module's structure (the same architecture never recompiles, whatever its weights).
    ``f.pure(structure, state, *args)`` is the compiled function itself, for callers that hold a split module
    (sharded or vmapped state, or a larger function that traces it). Keyword arguments named in
    ``static_argnames`` are static. With ``announce`` (e.g. "the sampling loop"), a call that compiles is
    preceded by a status line (:func:`set_status`).
    """
    if fn is None:
        return lambda f: ModuleFunction(f, static_argnames, announce)
    return ModuleFunction(fn, static_argnames, announce)


@jit_method(static_argnames=("record", "backend", "active"))
def _forward(model, sample, timesteps, encoder_hidden_states, rewiring=None, *, record=False, backend="auto",
             active=None):
    return model(sample, timesteps, encoder_hidden_states, rewiring, record=record, backend=backend, active=active)


def make_forward(denoiser, *, record=False, backend: str = "auto", active=None) -> tuple[Callable, dict]:
    """A jitted pure forward of a :class:`~ieadapt_jax.core.protocols.Denoiser` and its state.

    Returns (forward, state) with ``forward(state, sample, timesteps, encoder_hidden_states, rewiring=None)
    -> (prediction, Record | None)``, a ``jax.jit`` function (so ``forward.lower(...)`` works). ``record``, ``backend`` and ``active`` are the static plan (``active``: a
    tuple of site positions or None); rewiring values (not its shape) change without recompiling.
    """
    structure, state = split(denoiser)
    active = None if active is None else tuple(active)
    record = tuple(record) if isinstance(record, list) else record

    @jax.jit
    def forward(state, sample, timesteps, encoder_hidden_states, rewiring=None):
        return _forward.pure(structure, state, sample, timesteps, encoder_hidden_states, rewiring, record=record,
                             backend=backend, active=active)

    return forward, state


def _name(path) -> str:
    """A pytree path as a dotted parameter name; a Variable's own ``value`` entry is dropped."""
    parts = []
    for entry in path:
        for field in ("name", "key", "idx"):
            if hasattr(entry, field):
                parts.append(str(getattr(entry, field)))
                break
    if parts and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)
