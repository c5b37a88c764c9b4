"""Entropy-guided video editing (paper §4.2, Algorithm 1) and its baselines, as rows and rewiring presets.

    import ieadapt_jax as ia
    from . import edit

    result = edit(ia.toy.load_default(), "a large red circle moving right on a white background",
                  "a large blue circle moving right on a white background", height=32, width=32,
                  guidance_scale=5.0)

The same call edits with AnimateDiff or CogVideoX components (``ia.load_cogvideox(...)``: its joint text+video
attention sites are the self-attention sites ranked by entropy; a real video of 4k + 1 frames is encoded by its
causal 3D VAE and DDIM-inverted with v-prediction).

:mod:`.presets`: the row layout, methods (ieadapt, all, tokenflow, kv, v, p2p) and their rewirings;
:mod:`.run`: the edit itself (generated or real videos); :mod:`.masks`: background-preserving masks;
:mod:`.toy_scores`: weight-free scores of an edit in the toy world.
"""
from .masks import latent_mask, word_influence_mask, word_positions
from .presets import (
    DEFAULT_RATIO,
    METHODS,
    ROW_NAMES,
    EditError,
    Method,
    check_applies,
    check_p2p_prompts,
    decoder_sites,
    edit_rewiring,
    pair_layout,
    select_sites,
)
from .run import (
    PROFILES,
    BatchEdit,
    EditResult,
    ddim_config,
    decode_latents,
    edit,
    edit_batch,
    encode_text,
    encode_video,
    generate_batch,
    inversion_config,
    psnr,
)

__all__ = [
    "DEFAULT_RATIO",
    "METHODS",
    "PROFILES",
    "ROW_NAMES",
    "BatchEdit",
    "EditError",
    "EditResult",
    "Method",
    "check_applies",
    "check_p2p_prompts",
    "ddim_config",
    "decode_latents",
    "decoder_sites",
    "edit",
    "edit_batch",
    "edit_rewiring",
    "encode_text",
    "encode_video",
    "generate_batch",
    "inversion_config",
    "latent_mask",
    "pair_layout",
    "psnr",
    "select_sites",
    "word_influence_mask",
    "word_positions",
]
