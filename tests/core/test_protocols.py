"""The typed contracts between models and pipelines: what a Denoiser and Components must provide."""
import pytest

import ieadapt_jax as ia
from ieadapt_jax.core import ContractError, check_components, check_denoiser


def test_the_shipped_models_satisfy_the_protocols():
    components = ia.tiny_animatediff()
    assert isinstance(components, ia.Components) and check_components(components) is components
    assert isinstance(components.denoiser, ia.Denoiser) and check_denoiser(components.unet) is components.unet


def test_a_pipeline_names_what_a_wrong_object_lacks():
    class Half:
        vae = text_encoder = tokenizer = None
        scheduler_config = {}
        path = "nowhere"

    with pytest.raises(ContractError, match="Half is not a Components: it has no denoiser"):
        check_components(Half())
    with pytest.raises(ContractError, match="has no site_table, config, downsampling_factor"):
        check_denoiser(object())
    with pytest.raises(ContractError, match="not a Components"):
        ia.text_to_video(Half(), "a cat", num_frames=2, height=8, width=8, num_inference_steps=1, progress=False)
