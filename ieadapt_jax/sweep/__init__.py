"""Perturbation sweeps (paper §3, supplementary §7): replace attention maps by I, U or α·I + (1−α)·U, site by
site or in groups, over many prompts and seeds, and measure what changes.

    from .. import sweep
    definition = sweep.SweepDefinition(prompts=sweep.load_prompts("vbench"), targets=("each",), modes=("I", "U"))
    sweep.run_sweep(components, definition, "runs/sweep")     # resumable, sharded over all devices
    sweep.write_report("runs/sweep")                           # tables, plots, summary.md

Modules: :mod:`.definition` (what runs), :mod:`.engine` (how: vmapped chunks, sharding, resume),
:mod:`.store` (the output folder), :mod:`.metrics` (per-video metrics and their plug-in registry),
:mod:`.report` (tables and the markdown summary), :mod:`.plots` (the figures). The command line is
``python -m ieadapt_jax.sweep --help``.
"""
from .definition import (
    Config,
    SweepDefinition,
    SweepDefinitionError,
    expand,
    load_prompts,
    parse_target,
    resolve_target,
    toy_prompts,
)
from .engine import SweepRun, SweepRunError, initialize_distributed, run_sweep
from .metrics import METRICS, Metric, MetricError, get_metric, register_metric
from .report import tables, write_report
from .store import ResultStore, SweepStoreError, read_manifest

__all__ = [
    "Config",
    "METRICS",
    "Metric",
    "MetricError",
    "ResultStore",
    "SweepDefinition",
    "SweepDefinitionError",
    "SweepRun",
    "SweepRunError",
    "SweepStoreError",
    "expand",
    "get_metric",
    "initialize_distributed",
    "load_prompts",
    "parse_target",
    "read_manifest",
    "register_metric",
    "resolve_target",
    "run_sweep",
    "tables",
    "toy_prompts",
    "write_report",
]
