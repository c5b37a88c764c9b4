"""The per-forward site context: what one model call threads down to its attention sites.

Models never call :func:`~ieadapt_jax.core.attention.attend` directly at a rewirable site: each builds one
:class:`SiteContext` per forward and every attention module calls it with its site position.
"""
from __future__ import annotations

import jax

from .attention import Record, attend, stack_records
from .rewiring import Rewiring, RewiringError, check_active, resolve_sites, validate


class SiteContext:
    """What one model forward threads down to its attention sites: rewiring, recording plan, backend.

    A model builds one per call (``SiteContext(table, rows, rewiring, record, backend)``, rows = the
    model's batch), passes it to
    every attention module, and each module calls ``ctx(site_position, q, k, v, ...)`` instead of
    :func:`attend`. Records are collected per call and returned by :meth:`records` as one
    :class:`Record` of [recorded sites, rows] arrays in forward order: they are returned values of
    the model's forward, not state.

    ``active`` (part of the static plan) names the sites whose rewiring slice is applied; the others
    run plain attention with no row gathers or mix. None (default) applies the rewiring everywhere,
    which is what a sweep over sites needs; a run that rewires a few known sites passes them here.
    """

    def __init__(
        self, table, rows: int, rewiring: Rewiring | None = None, record=False, backend: str = "auto", active=None
    ):
        if rewiring is not None:
            validate(rewiring, table, rows)
            if rewiring.lead_shape:
                raise RewiringError(
                    f"the model takes a rewiring of shape [sites, rows]; this one has leading axes {rewiring.lead_shape} "
                    "(index the step, or vmap over the configuration axis)"
                )
        self.table = table
        self.rows = int(rows)
        self.rewiring = rewiring
        self.recording = table.recording(record)
        self.backend = backend
        self.active = None if active is None else frozenset(resolve_sites(table, active))
        if rewiring is not None and self.active is not None and not isinstance(rewiring.q_from, jax.core.Tracer):
            check_active(rewiring, table, self.active)
        self._records: dict[int, Record] = {}

    def __call__(self, site: int, q, k, v, **kwargs):
        """Attention at site position ``site``: this site's rewiring slice and recording applied."""
        rewired = self.rewiring is not None and (self.active is None or site in self.active)
        rw = self.rewiring.site(site) if rewired else None
        out, rec = attend(q, k, v, rw, record=site in self.recording, backend=self.backend, rows=self.rows, **kwargs)
        if rec is not None:
            self._records[site] = rec
        return out

    @property
    def recorded_names(self) -> tuple[str, ...]:
        """Names of the recording sites, in the order of :meth:`records`."""
        return tuple(self.table[s].name for s in self.recording)

    def records(self) -> Record | None:
        """The collected records stacked as [recorded sites, rows], or None when nothing records."""
        if not self.recording:
            return None
        missing = [self.table[s].name for s in self.recording if s not in self._records]
        if missing:
            raise RuntimeError(f"sites planned to record were never called: {missing}")
        return stack_records([self._records[s] for s in self.recording])

