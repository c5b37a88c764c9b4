"""The leaf core of ieadapt-jax: what every model and every pipeline stands on.

Sites and selectors (:mod:`.sites`), the rewiring algebra (:mod:`.rewiring`), the one attention function and its
backends (:mod:`.attention`, :mod:`.cudnn`), the per-forward site context and its records (:mod:`.context`), the
typed contracts between models and pipelines (:mod:`.protocols`), the jit boundary (:mod:`.jit`) and the error
base (:mod:`.errors`). It imports only jax, numpy and the standard library (a test checks).
"""
from .attention import (
    BACKENDS,
    Record,
    attend,
    attention_map,
    resolve_backend,
    stack_records,
)
from .context import SiteContext
from .errors import AttentionError, ConfigError, IEAdaptError
from .jit import jit_method, make_forward, merge, split
from .protocols import (
    Components,
    ContractError,
    Denoiser,
    check_components,
    check_denoiser,
)
from .rewiring import (
    A_MIX,
    I_MIX,
    U_MIX,
    Rewiring,
    RewiringError,
    SiteRewiring,
    SiteSpec,
    check_active,
    inject,
    mode_mix,
    noop,
    over_steps,
    perturb,
    resolve_sites,
    rewired_sites,
    stack,
    validate,
)
from .sites import KINDS, SELF_KINDS, Site, SiteError, SiteTable

__all__ = [
    "A_MIX", "BACKENDS", "I_MIX", "KINDS", "SELF_KINDS", "U_MIX",
    "AttentionError", "Components", "ContractError", "check_components", "check_denoiser", "ConfigError", "Denoiser", "IEAdaptError", "Record", "Rewiring",
    "RewiringError", "Site", "SiteContext", "SiteError", "SiteRewiring", "SiteSpec", "SiteTable",
    "attend", "attention_map", "check_active", "inject", "jit_method", "make_forward", "merge", "mode_mix", "noop",
    "over_steps", "perturb", "resolve_backend", "resolve_sites", "rewired_sites", "split", "stack",
    "stack_records", "validate",
]
