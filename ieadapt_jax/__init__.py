"""ieadapt-jax: open up the attention of video diffusion models in pure JAX.

The pieces everything stands on (:mod:`ieadapt_jax.core`):

- :func:`attend` — the one attention core (rewiring, entropy/energy records, backends);
- :class:`Rewiring` and its constructors (:func:`noop`, :func:`perturb`, :func:`inject`, ...);
- :class:`SiteTable` — a model's ordered attention sites and selectors over them;
- :class:`Denoiser` / :class:`Components` — the contracts between models and pipelines;
- :class:`IEAdaptError` — the base of every error a user can cause.

On top of them: loaders (:func:`load_animatediff`, :func:`load_cogvideox`), the sampling loop
(:func:`sample`), guidance (:class:`Guidance`), the text-to-video pipeline (:func:`text_to_video`),
editing (:mod:`ieadapt_jax.editing`), sweeps (:mod:`ieadapt_jax.sweep`), metrics (:mod:`ieadapt_jax.scoring`),
the toy world (:mod:`ieadapt_jax.toy`) and the command line (:mod:`ieadapt_jax.cli`). docs/architecture.md
in the repository maps the layers.
"""
from .core import (
    BACKENDS,
    KINDS,
    SELF_KINDS,
    Components,
    ConfigError,
    ContractError,
    Denoiser,
    IEAdaptError,
    Record,
    Rewiring,
    RewiringError,
    Site,
    SiteContext,
    SiteError,
    SiteRewiring,
    SiteTable,
    attend,
    attention_map,
    check_active,
    check_components,
    check_denoiser,
    inject,
    jit_method,
    make_forward,
    mode_mix,
    noop,
    over_steps,
    perturb,
    resolve_backend,
    resolve_sites,
    rewired_sites,
    stack,
    stack_records,
    validate,
)
from .guidance import PRESETS, Guidance, GuidanceError, guidance_rows, profile_entropy
from .loading import (
    AnimateDiffComponents,
    CogVideoXComponents,
    load_animatediff,
    load_cogvideox,
)
from .pipeline import PipelineError, VideoResult, text_to_video
from .sampling import SampleResult, SamplingError, SamplingPlan, make_plan, sample
from .tiny import tiny_animatediff

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "KINDS", "SELF_KINDS", "PRESETS",
    "AnimateDiffComponents", "CogVideoXComponents", "Components", "ConfigError", "ContractError", "Denoiser", "Guidance",
    "GuidanceError", "IEAdaptError", "PipelineError", "Record", "Rewiring", "RewiringError", "SampleResult",
    "SamplingError", "SamplingPlan", "Site", "SiteContext", "SiteError", "SiteRewiring", "SiteTable", "VideoResult",
    "attend", "attention_map", "check_active", "check_components", "check_denoiser", "guidance_rows", "inject", "jit_method", "load_animatediff",
    "load_cogvideox", "make_forward", "make_plan", "mode_mix", "noop", "over_steps", "perturb", "profile_entropy",
    "resolve_backend", "resolve_sites", "rewired_sites", "sample", "stack", "stack_records", "text_to_video",
    "tiny_animatediff", "validate",
]
