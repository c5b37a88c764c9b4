"""ieadapt-jax: open up the attention of video diffusion models in pure JAX.

The pieces everything stands on:

- :func:`attend` — the one attention core (rewiring, entropy/energy records, backends);
- :class:`Rewiring` and its constructors (:func:`noop`, :func:`perturb`, :func:`inject`, ...);
- :class:`SiteTable` — a model's ordered attention sites and selectors over them.
"""
from .attention import Record, SiteContext, attend, attention_map, resolve_backend, stack_records
from .rewiring import (
    Rewiring,
    RewiringError,
    SiteRewiring,
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
from .loading import AnimateDiffComponents, CogVideoXComponents, load_animatediff, load_cogvideox

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "SELF_KINDS",
    "Record",
    "Rewiring",
    "RewiringError",
    "Site",
    "SiteError",
    "SiteContext",
    "SiteRewiring",
    "SiteTable",
    "attend",
    "attention_map",
    "inject",
    "mode_mix",
    "noop",
    "over_steps",
    "perturb",
    "resolve_backend",
    "resolve_sites",
    "stack",
    "stack_records",
    "validate",
    "AnimateDiffComponents",
    "load_animatediff",
    "CogVideoXComponents",
    "load_cogvideox",
]

from .sampling import SampleResult, SamplingError, SamplingPlan, make_plan, sample
from .guidance import PRESETS, Guidance, GuidanceError, guidance_rows, profile_entropy
from .pipeline import PipelineError, VideoResult, text_to_video
from .demo import tiny_animatediff

__all__ += [
    "SampleResult",
    "SamplingError",
    "SamplingPlan",
    "make_plan",
    "rewired_sites",
    "check_active",
    "sample",
    "PRESETS",
    "Guidance",
    "GuidanceError",
    "guidance_rows",
    "profile_entropy",
    "PipelineError",
    "VideoResult",
    "text_to_video",
    "tiny_animatediff",
]
