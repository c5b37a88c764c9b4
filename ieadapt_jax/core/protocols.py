"""The typed contracts between models and everything that runs them.

A :class:`Denoiser` is what the sampling loop calls each step (AnimateDiff's motion UNet, CogVideoX's
transformer, the toy UNet); :class:`Components` is a loaded pipeline: its denoiser, VAE, text encoder,
tokenizer and scheduler config. Sampling, guidance, inversion, editing and sweeps are written against
these two protocols alone, so a new model joins them by providing the same attributes.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

from .attention import Record
from .errors import IEAdaptError
from .rewiring import Rewiring
from .sites import SiteTable


@runtime_checkable
class Denoiser(Protocol):
    """A video denoiser whose attention sites are rewirable and recordable.

    ``site_table`` lists its attention sites in forward order; ``config`` is its frozen config;
    ``downsampling_factor`` is what latent heights and widths must be multiples of. The call takes
    latents [B, F, H, W, C], timesteps [B], text states [B, L, D] and an optional [sites, B] rewiring, and
    returns (prediction [B, F, H, W, C], a :class:`Record` of [recorded sites, B] arrays or None).
    """

    site_table: SiteTable
    config: Any

    @property
    def downsampling_factor(self) -> int: ...

    def __call__(
        self,
        sample: jax.Array,
        timesteps: jax.Array,
        encoder_hidden_states: jax.Array,
        rewiring: Rewiring | None = None,
        record=False,
        backend: str = "auto",
        active=None,
    ) -> tuple[jax.Array, Record | None]: ...


@runtime_checkable
class Components(Protocol):
    """A loaded text-to-video pipeline.

    ``denoiser`` (a :class:`Denoiser`), ``vae`` (``encode_frames`` / ``decode_frames`` and ``config``),
    ``text_encoder`` (``prompt_embeds``), ``tokenizer`` (a transformers-style tokenizer),
    ``scheduler_config`` (the scheduler's config.json as a dict) and ``path`` (where it was loaded from).
    """

    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    path: str

    @property
    def denoiser(self) -> Denoiser: ...


class ContractError(IEAdaptError):
    """An object handed to a pipeline lacks what its protocol (:class:`Denoiser` or :class:`Components`) needs."""


def check_denoiser(model) -> Denoiser:
    """``model`` if it is a :class:`Denoiser`, else a :class:`ContractError` naming what it lacks."""
    return _checked(model, Denoiser, ("site_table", "config", "downsampling_factor", "__call__"))


def check_components(components) -> Components:
    """``components`` if they are :class:`Components` with a :class:`Denoiser`, else a :class:`ContractError`."""
    _checked(components, Components, ("denoiser", "vae", "text_encoder", "tokenizer", "scheduler_config", "path"))
    check_denoiser(components.denoiser)
    return components


def _checked(obj, protocol, members: tuple[str, ...]):
    if isinstance(obj, protocol):
        return obj
    missing = [m for m in members if not hasattr(obj, m)]
    raise ContractError(f"{type(obj).__name__} is not a {protocol.__name__}: it has no {', '.join(missing)} "
                        f"(see ieadapt_jax.core.protocols)")
