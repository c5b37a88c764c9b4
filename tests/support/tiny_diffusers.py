"""Tiny random-weight diffusers and transformers models that several test folders build: the AnimateDiff
pipeline parts, the CogVideoX pipeline parts and the UNetMotion fixtures (reference section 6)."""
import diffusers
import torch
import transformers

from ieadapt_jax.tiny import tiny_tokenizer

COGVIDEOX_TEXT = 8  # the tiny CogVideoX transformer's max_text_seq_length


def animatediff_parts() -> dict:
    """The components of a tiny random-weight diffusers AnimateDiffPipeline (keyword arguments of its constructor)."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
    ).eval()
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
    )
    adapter = diffusers.MotionAdapter(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_norm_num_groups=8,
        motion_num_attention_heads=2,
        use_motion_mid_block=True,
        motion_max_seq_length=32,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
    ).eval()
    scheduler = diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    return dict(unet=unet, motion_adapter=adapter, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)



def _randomise(*modules) -> None:
    """Perturb every parameter so zero-initialised biases and unit norms are exercised too."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))



def build_fixture(name: str):
    """(UNet2DConditionModel, MotionAdapter, sample shape [B, C, F, H, W], text shape [B, L, D])."""
    torch.manual_seed(0)
    if name == "tiny":
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 32, 64, 64), down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2, norm_num_groups=8,
            cross_attention_dim=32, attention_head_dim=2, sample_size=16)
        adapter = diffusers.MotionAdapter(block_out_channels=(32, 32, 64, 64), motion_layers_per_block=2,
                                          motion_num_attention_heads=2, motion_norm_num_groups=8, use_motion_mid_block=False)
        shapes = (2, 4, 8, 16, 16), (2, 8, 32)
    else:
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, norm_num_groups=8,
            cross_attention_dim=16, attention_head_dim=2, sample_size=8)
        adapter = diffusers.MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
                                          motion_norm_num_groups=8, use_motion_mid_block=True)
        shapes = (2, 4, 4, 8, 8), (2, 8, 16)
    _randomise(unet, adapter)
    return unet.eval(), adapter.eval(), shapes


COGVIDEOX_5B_SCHEDULER = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, prediction_type="v_prediction",
    rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0, timestep_spacing="trailing", steps_offset=0,
)



def tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer over a few words and the letters, built in memory."""
    words = ["▁a", "▁cat", "▁dog", "▁runs", "▁on", "▁the", "▁grass"]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(w, -1.0) for w in words]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return transformers.T5Tokenizer(vocab=pieces, extra_ids=0)



def tiny_cogvideox_parts(seed: int = 0) -> dict:
    """The components of a tiny random-weight diffusers CogVideoXPipeline (keyword arguments of its constructor)."""
    torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer()
    text_encoder = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=4, num_heads=4, num_layers=2, d_ff=24, feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=8, relative_attention_max_distance=16)).eval()
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8, text_embed_dim=16,
        num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2, max_text_seq_length=COGVIDEOX_TEXT,
        use_rotary_positional_embeddings=True).eval()
    vae = diffusers.AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8), down_block_types=("CogVideoXDownBlock3D",) * 3,
        up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, norm_num_groups=2, layers_per_block=1,
        sample_height=48, sample_width=80).eval()  # default_tiling() (24x40 px tiles) is then seamless
    for module in (transformer, vae, text_encoder):
        with torch.no_grad():
            for p in module.parameters():  # zero biases and unit norms would hide mistakes
                p.add_(0.05 * torch.randn_like(p))
    scheduler = diffusers.CogVideoXDDIMScheduler(**COGVIDEOX_5B_SCHEDULER)
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
