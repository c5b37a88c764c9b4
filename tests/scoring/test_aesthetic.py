"""LAION aesthetic heads: parity with the published PyTorch heads (random weights) through the
production loader, and the aesthetic score of videos end to end (CLIP preprocessing included)."""
import numpy as np
import pytest
import torch
import transformers
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.convert.metrics_weights import load_aesthetic, load_clip
from support.metric_models import random_videos, save_tiny_clip
from safetensors.torch import save_file

from ieadapt_jax.scoring import aesthetic_score

ATOL = 1e-4


def _laion_mlp(width):
    """improved-aesthetic-predictor's MLP: Linear/Dropout stack without activations, as published."""
    return torch.nn.Sequential(
        torch.nn.Linear(width, 1024), torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    )


class _Predictor(torch.nn.Module):
    """The published class holds the stack as ``layers`` (so its state dict keys are layers.{i}.*)."""

    def __init__(self, width):
        super().__init__()
        self.layers = _laion_mlp(width)

    def forward(self, x):
        return self.layers(x)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_head_matches_pytorch(tmp_path, kind):
    torch.manual_seed(0)
    ref = (_Predictor(768) if kind == "mlp" else torch.nn.Linear(768, 1)).eval()
    torch.save(ref.state_dict(), tmp_path / "head.pth")
    save_file(ref.state_dict(), tmp_path / "head.safetensors")
    embeddings = _unit(np.random.default_rng(0).normal(size=(5, 768))).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(embeddings))[:, 0].numpy()
    for name in ("head.pth", "head.safetensors"):
        head = load_aesthetic(tmp_path / name)
        assert (head.kind, head.embed_dim) == (kind, 768)
        np.testing.assert_allclose(head(embeddings), expected, atol=ATOL)


def test_aesthetic_score_of_videos(tmp_path):
    clip_ref, _ = save_tiny_clip(tmp_path / "clip", projection_dim=24)
    torch.manual_seed(1)
    head_ref = _Predictor(24).eval()
    torch.save(head_ref.state_dict(), tmp_path / "aesthetic.pth")
    videos = random_videos((2, 3, 72, 96, 3))
    pixels = transformers.CLIPImageProcessorPil()(list(videos.reshape(6, 72, 96, 3)), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        image = clip_ref.get_image_features(pixels)
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        image = image / image.norm(dim=-1, keepdim=True)  # the LAION recipe normalises the embedding
        expected = head_ref(image)[:, 0].reshape(2, 3).mean(1).numpy()
    clip, _ = load_clip(tmp_path / "clip", cache=False)
    ours = aesthetic_score(clip, load_aesthetic(tmp_path / "aesthetic.pth"), videos, batch_size=4)
    np.testing.assert_allclose(ours, expected, atol=ATOL)


def test_errors(tmp_path):
    torch.save({"fc.weight": torch.zeros(1, 768)}, tmp_path / "bad.pth")
    with pytest.raises(ConversionError, match="not a LAION aesthetic head"):
        load_aesthetic(tmp_path / "bad.pth")
    torch.save({"layers.0.weight": torch.zeros(1024, 768), "layers.0.bias": torch.zeros(1024)}, tmp_path / "partial.pth")
    with pytest.raises(ConversionError, match="layers.2.kernel"):
        load_aesthetic(tmp_path / "partial.pth")
    torch.save(torch.nn.Linear(512, 1).state_dict(), tmp_path / "b32.pth")
    head = load_aesthetic(tmp_path / "b32.pth")
    with pytest.raises(ValueError, match="takes 512-d CLIP image embeddings"):
        head(np.zeros((2, 768), np.float32))
