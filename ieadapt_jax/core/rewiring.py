"""The rewiring algebra: every attention intervention as data (docs/attention.md#rewiring).

For site s and batch row b (a row is one video being denoised; CFG branches, source/target and
perturbed copies are rows of one batch):

    q_from[s, b], k_from[s, b], v_from[s, b]   int32   row whose Q / K / V row b uses
    mix[s, b] = (a, i, u)                      float32 out = a·softmax(QKᵀ/√d)V + i·V + u·mean_k(V)

The default (no-op) is q_from = k_from = v_from = b and mix = (1, 0, 0). Leading axes are allowed:
[steps, sites, rows] for schedules consumed by ``lax.scan``, [configs, ...] for sweeps under ``vmap``.
Changing any value never recompiles: only the shapes (sites, rows, leading axes) are static.

Constructors here return new rewirings backed by numpy (host) arrays and check what they are given
against the model's :class:`~ieadapt_jax.core.sites.SiteTable`.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from .errors import IEAdaptError
from .sites import SiteError, SiteTable

SiteSpec = Union[int, str, Sequence[Union[int, str]]]

A_MIX = (1.0, 0.0, 0.0)
I_MIX = (0.0, 1.0, 0.0)
U_MIX = (0.0, 0.0, 1.0)


class RewiringError(IEAdaptError):
    """A rewiring is malformed or asks for something the model cannot do (e.g. I on cross-attention)."""


class SiteRewiring(NamedTuple):
    """One site's slice of a :class:`Rewiring`: what ``attend`` takes. Shapes [B] and [B, 3]."""

    q_from: jax.Array
    k_from: jax.Array
    v_from: jax.Array
    mix: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rewiring:
    """Per-site, per-row attention rewiring; see the module docstring. A pytree of four arrays."""

    q_from: jax.Array  # int32 [..., S, B]
    k_from: jax.Array  # int32 [..., S, B]
    v_from: jax.Array  # int32 [..., S, B]
    mix: jax.Array  # float32 [..., S, B, 3]

    @property
    def num_sites(self) -> int:
        return self.q_from.shape[-2]

    @property
    def rows(self) -> int:
        return self.q_from.shape[-1]

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Leading (step / configuration) axes in front of [sites, rows]."""
        return tuple(self.q_from.shape[:-2])

    def site(self, s: int) -> SiteRewiring:
        """The slice ``attend`` takes for site position ``s`` (requires no leading axes)."""
        if self.lead_shape:
            raise RewiringError(
                f"rewiring has leading axes {self.lead_shape}; index the step/config first (e.g. with lax.scan or vmap)"
            )
        return SiteRewiring(self.q_from[s], self.k_from[s], self.v_from[s], self.mix[s])

    def __getitem__(self, idx) -> "Rewiring":
        """Index the leading axes (step or configuration): ``rw[t]``."""
        if not self.lead_shape:
            raise RewiringError("rewiring has no leading axis to index")
        return jax.tree_util.tree_map(lambda x: x[idx], self)

    def numpy(self) -> "Rewiring":
        """A host copy (numpy arrays) of this rewiring."""
        return jax.tree_util.tree_map(np.asarray, self)

    def device(self) -> "Rewiring":
        """This rewiring as jax arrays."""
        return jax.tree_util.tree_map(jnp.asarray, self)


def noop(sites: int | SiteTable, rows: int) -> Rewiring:
    """The rewiring that changes nothing, for ``sites`` (a count or a table) and ``rows`` batch rows."""
    num_sites = len(sites) if isinstance(sites, SiteTable) else int(sites)
    if num_sites < 1 or rows < 1:
        raise RewiringError(f"need at least one site and one row, got sites={num_sites}, rows={rows}")
    own = np.broadcast_to(np.arange(rows, dtype=np.int32), (num_sites, rows)).copy()
    mix = np.broadcast_to(np.asarray(A_MIX, np.float32), (num_sites, rows, 3)).copy()
    return Rewiring(own, own.copy(), own.copy(), mix)


def mode_mix(mode) -> tuple[float, float, float]:
    """(a, i, u) of a perturbation mode: "A" (unchanged), "I", "U", or α for α·I + (1−α)·U."""
    if isinstance(mode, str):
        table = {"A": A_MIX, "I": I_MIX, "U": U_MIX}
        if mode.upper() not in table:
            raise RewiringError(f"unknown perturbation mode {mode!r}; use 'A', 'I', 'U' or a number α in [0, 1]")
        return table[mode.upper()]
    alpha = float(mode)
    if not 0.0 <= alpha <= 1.0:
        raise RewiringError(f"α must be in [0, 1] for α·I + (1−α)·U, got {alpha}")
    return (0.0, alpha, 1.0 - alpha)


def perturb(rw: Rewiring, table: SiteTable, sites: SiteSpec, mode, rows: int | Sequence[int] | None = None) -> Rewiring:
    """Replace the attention map at ``sites`` for ``rows`` (default all) by I, U or α·I + (1−α)·U.

    I exists only where queries and keys are the same tokens: asking for it at a cross-attention
    site raises :class:`RewiringError`.
    """
    rw = _checked_host(rw, table)
    idx = resolve_sites(table, sites)
    rows_idx = _rows(rows, rw.rows)
    mix_value = mode_mix(mode)
    if mix_value[1] != 0.0:
        bad = [table[s].name for s in idx if not table[s].is_self]
        if bad:
            raise RewiringError(
                f"the identity map I needs self-attention (N_q = N_k); these sites are cross-attention: {bad}. "
                "Select with kind='self' or use mode 'U'."
            )
    mix = rw.mix.copy()
    mix[np.ix_(idx, rows_idx)] = np.asarray(mix_value, np.float32)
    return dataclasses.replace(rw, mix=mix)


def inject(
    rw: Rewiring,
    table: SiteTable,
    sites: SiteSpec,
    src: int | Sequence[int],
    dst: int | Sequence[int],
    what: str = "qk",
) -> Rewiring:
    """At ``sites``, rows ``dst`` take tensors from rows ``src`` (paired in order).

    what="qk": the attention map (Q and K) of the source, own V (IE-Adapt editing, P2P).
    what="kv": key and value of the source (MasaCtrl). what="v": value only.
    """
    rw = _checked_host(rw, table)
    idx = resolve_sites(table, sites)
    src_idx = _rows(src, rw.rows)
    dst_idx = _rows(dst, rw.rows)
    if len(src_idx) != len(dst_idx):
        raise RewiringError(f"inject needs as many source rows as target rows, got src={src_idx}, dst={dst_idx}")
    fields = {"qk": ("q_from", "k_from"), "kv": ("k_from", "v_from"), "v": ("v_from",)}
    if what not in fields:
        raise RewiringError(f"inject what={what!r}: use 'qk' (map), 'kv' (key/value) or 'v' (value)")
    updates = {}
    for field in fields[what]:
        arr = getattr(rw, field).copy()
        arr[np.ix_(idx, dst_idx)] = np.asarray(src_idx, np.int32)[None, :]
        updates[field] = arr
    return dataclasses.replace(rw, **updates)


def stack(rewirings: Sequence[Rewiring]) -> Rewiring:
    """Stack rewirings of equal shape on a new leading axis (steps of a schedule, or configurations)."""
    if not rewirings:
        raise RewiringError("nothing to stack")
    shapes = {jax.tree_util.tree_map(np.shape, r).q_from for r in rewirings}
    if len(shapes) != 1:
        raise RewiringError(f"cannot stack rewirings of different shapes: {sorted(shapes)}")
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *rewirings)


def over_steps(active: Rewiring, num_steps: int, window: tuple[int, int] | None = None) -> Rewiring:
    """A schedule [steps, sites, rows]: ``active`` at steps in ``window`` = [start, stop), no-op elsewhere."""
    if active.lead_shape:
        raise RewiringError(f"over_steps takes a rewiring without leading axes, got {active.lead_shape}")
    check_window(window, num_steps)
    start, stop = (0, num_steps) if window is None else window
    idle = noop(active.num_sites, active.rows)
    return stack([active if start <= t < stop else idle for t in range(num_steps)])


def check_window(window, num_steps: int | None = None, *, what: str = "step window",
                 error: type[Exception] = RewiringError) -> None:
    """The one step-window check: ``window`` is None or (start, stop) with 0 <= start < stop (<= num_steps when
    given); else ``error`` naming ``what``, the window and the steps."""
    if window is None:
        return
    ok = len(window) == 2 and 0 <= window[0] < window[1] and (num_steps is None or window[1] <= num_steps)
    if not ok:
        bound = "" if num_steps is None else f" <= {num_steps} (the run's steps)"
        raise error(f"{what} {tuple(window)} must satisfy 0 <= start < stop{bound}")


def resolve_sites(table: SiteTable, sites: SiteSpec) -> list[int]:
    """Site positions from a position, a name, or a list of them (each checked against ``table``)."""
    items = [sites] if isinstance(sites, (int, str, np.integer)) else list(sites)
    if not items:
        raise SiteError("no site selected")
    out = []
    for item in items:
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(table):
                raise SiteError(f"site index {int(item)} out of range: the model has {len(table)} sites (0..{len(table) - 1})")
            out.append(int(item))
        else:
            out.append(table.index(item))
    return sorted(set(out))


def validate(rw: Rewiring, table: SiteTable | None = None, rows: int | None = None) -> Rewiring:
    """Check dtypes, shapes, row indices and (given a table) that I is only used at self-attention sites.

    Works on concrete arrays (numpy or jax); returns ``rw`` unchanged so it can be chained.
    """
    for field in ("q_from", "k_from", "v_from", "mix"):
        if not hasattr(getattr(rw, field), "shape"):
            raise RewiringError(f"rewiring.{field} must be an array, got {type(getattr(rw, field)).__name__}")
    shape = tuple(rw.q_from.shape)
    if len(shape) < 2:
        raise RewiringError(f"rewiring.q_from must have shape [..., sites, rows], got {list(shape)}")
    for field in ("k_from", "v_from"):
        if tuple(getattr(rw, field).shape) != shape:
            raise RewiringError(f"rewiring.{field} has shape {list(getattr(rw, field).shape)}, q_from has {list(shape)}")
    if tuple(rw.mix.shape) != shape + (3,):
        raise RewiringError(f"rewiring.mix must have shape {list(shape + (3,))}, got {list(rw.mix.shape)}")
    for field in ("q_from", "k_from", "v_from"):
        if np.dtype(getattr(rw, field).dtype) != np.int32:
            raise RewiringError(f"rewiring.{field} must be int32, got {getattr(rw, field).dtype}")
    if np.dtype(rw.mix.dtype) != np.float32:
        raise RewiringError(f"rewiring.mix must be float32, got {rw.mix.dtype}")
    if table is not None and shape[-2] != len(table):
        raise RewiringError(f"rewiring has {shape[-2]} sites but the model has {len(table)}")
    if rows is not None and shape[-1] != rows:
        raise RewiringError(f"rewiring has {shape[-1]} rows but the batch has {rows}")
    if isinstance(rw.q_from, jax.core.Tracer):
        return rw
    n = shape[-1]
    for field in ("q_from", "k_from", "v_from"):
        arr = np.asarray(getattr(rw, field))
        bad = np.argwhere((arr < 0) | (arr >= n))
        if bad.size:
            pos = tuple(int(x) for x in bad[0])
            raise RewiringError(f"rewiring.{field}{list(pos)} = {int(arr[pos])} is not a row index (rows are 0..{n - 1})")
    if table is not None:
        mix = np.asarray(rw.mix)
        cross = [s for s in range(len(table)) if not table[s].is_self]
        if cross:
            used = np.any(mix[..., cross, :, 1] != 0, axis=tuple(range(mix.ndim - 3)) + (mix.ndim - 2,))
            bad = [table[cross[j]].name for j in np.flatnonzero(used)]
            if bad:
                raise RewiringError(f"the identity map I is used at cross-attention sites (N_q != N_k): {bad}")
    return rw


def rewired_sites(rw: Rewiring) -> tuple[int, ...]:
    """Positions of the sites that some step or row of a (concrete) rewiring changes from the no-op."""
    own = np.arange(rw.rows, dtype=np.int32)
    changed = np.zeros(rw.num_sites, bool)
    for field in ("q_from", "k_from", "v_from"):
        arr = np.asarray(getattr(rw, field))  # [..., S, R]
        changed |= np.any(arr != own, axis=tuple(range(arr.ndim - 2)) + (arr.ndim - 1,))
    mix = np.asarray(rw.mix)  # [..., S, R, 3]
    changed |= np.any(mix != np.asarray(A_MIX, np.float32), axis=tuple(range(mix.ndim - 3)) + (mix.ndim - 2, mix.ndim - 1))
    return tuple(int(s) for s in np.flatnonzero(changed))


def check_active(rw: Rewiring, table: SiteTable, active) -> None:
    """Raise unless every site a concrete rewiring changes is among the plan's ``active`` positions."""
    outside = sorted(set(rewired_sites(rw)) - set(active))
    if outside:
        raise RewiringError(
            f"sites {[table[s].name for s in outside]} are rewired but not in the plan's active sites; "
            "add them to active= or use active=None"
        )


def _checked_host(rw: Rewiring, table: SiteTable) -> Rewiring:
    validate(rw, table)
    if rw.lead_shape:
        raise RewiringError(f"build with a rewiring without leading axes (got {rw.lead_shape}), then stack")
    return jax.tree_util.tree_map(lambda x: np.array(x), rw)


def _rows(rows, n: int) -> list[int]:
    if rows is None:
        return list(range(n))
    items = [rows] if isinstance(rows, (int, np.integer)) else list(rows)
    bad = [int(r) for r in items if not 0 <= int(r) < n]
    if bad:
        raise RewiringError(f"row index {bad} out of range: the batch has {n} rows (0..{n - 1})")
    return [int(r) for r in items]
