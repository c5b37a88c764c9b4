"""The one error of the metrics: :class:`MetricError`, raised by :mod:`ieadapt_jax.scoring` and by the sweep's
per-video metric registry (:mod:`ieadapt_jax.sweep.metrics`)."""
from __future__ import annotations

from ..core.errors import IEAdaptError


class MetricError(IEAdaptError):
    """Bad metric input, weights folder or registry entry (an unknown metric name, a malformed metric, a plug-in
    module that cannot be imported); the message names the argument, file or metric at fault."""
