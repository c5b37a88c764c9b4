"""Tiny random-weight transformers models for the metric tests, saved as the folders users would have."""
import numpy as np
import torch
import transformers

from ieadapt_jax.tiny import tiny_tokenizer


def save_tiny_clip(path, *, projection_dim=16, image_size=224, patch_size=32, seed=0, tokenizer=True):
    """A 2-layer CLIPModel (text and vision width 32) saved to ``path`` with the tiny BPE tokenizer;
    returns (torch model in eval mode, tokenizer)."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    text = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vocab_size=len(tok),
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size,
    )
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return model, tok


def save_tiny_dino(path, *, kind="vit", image_size=64, patch_size=16, seed=0):
    """A 2-layer ViTModel (DINO architecture, pooler included as in facebook/dino-vitb16) or
    Dinov2Model (layer scale != 1) of width 32 saved to ``path``; returns the torch model."""
    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=patch_size)
    if kind == "vit":
        model = transformers.ViTModel(transformers.ViTConfig(intermediate_size=37, layer_norm_eps=1e-6, **common))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(layerscale_value=0.5, **common))
    with torch.no_grad():  # transformers initialises class and position embeddings to constants; make them matter
        model.embeddings.cls_token.normal_()
        model.embeddings.position_embeddings.normal_()
    model.eval().save_pretrained(path)
    return model


def random_videos(shape, seed=0):
    """uint8 videos of ``shape`` [N, F, H, W, 3]: smooth random colour fields plus noise, so that
    frames look alike (as a video's frames do) but not identical."""
    rng = np.random.default_rng(seed)
    N, F, H, W, _ = shape
    base = rng.uniform(0, 255, (N, 1, 4, 4, 3))
    grid = np.kron(base, np.ones((1, 1, (H + 3) // 4, (W + 3) // 4, 1)))[:, :, :H, :W]
    return np.clip(grid + rng.normal(0, 30, (N, F, H, W, 3)), 0, 255).astype(np.uint8)
