"""LPIPS: parity with the lpips package's own network (torchvision's AlexNet / VGG16 feature stacks,
random trunk weights, the package's real v0.1 linear heads) through the production loaders."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.convert.metrics_weights import load_lpips
from support.reference_packages import reference_modules

from ieadapt_jax.scoring import lpips_distance

ATOL = 1e-4


def _reference(ref, net, tmp_path):
    """(lpips.LPIPS with a random trunk and the package's heads, heads file, torchvision trunk file, whole file)."""
    torch.manual_seed(0)
    model = ref.lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    # torchvision's key layout: its feature stack's state dict under "features.", plus a classifier
    # entry (the real files hold the whole classifier; the loader must ignore it)
    # (lpips' slice{k}.{i} keep torchvision's feature indices i)
    trunk = {f"features.{k.split('.', 1)[1]}": v for k, v in model.net.state_dict().items()}
    trunk["classifier.1.weight"] = torch.zeros(4, 4)
    torch.save(trunk, tmp_path / f"{net}_trunk.pth")
    torch.save(model.state_dict(), tmp_path / f"{net}_whole.pth")
    return model, ref.lpips_weights / f"{net}.pth", tmp_path / f"{net}_trunk.pth", tmp_path / f"{net}_whole.pth"


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_the_lpips_package(tmp_path, net):
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (2, 64, 72, 3)).astype(np.float32)
    x1 = np.clip(x0 + rng.normal(0, 0.3, x0.shape), -1, 1).astype(np.float32)
    with reference_modules() as ref:
        model, heads, trunk, whole = _reference(ref, net, tmp_path)
        with torch.no_grad():
            expected = model(torch.from_numpy(x0).permute(0, 3, 1, 2), torch.from_numpy(x1).permute(0, 3, 1, 2))
    expected = expected.flatten().numpy()
    assert expected.min() > 0
    inputs = jnp.asarray(np.stack([x0, x0])), jnp.asarray(np.stack([x1, x0]))  # [2 pairs, N, H, W, 3]
    for ours in (load_lpips(heads, trunk, net=net), load_lpips(whole, net=net)):
        graphdef, state = nnx.split(ours)
        distances = jax.jit(jax.vmap(lambda a, b: nnx.merge(graphdef, state)(a, b)))(*inputs)
        np.testing.assert_allclose(distances[0], expected, atol=ATOL, rtol=1e-4)
        np.testing.assert_allclose(distances[1], 0.0, atol=1e-7)  # d(x, x) = 0


def test_lpips_distance_of_videos_matches_per_frame_lpips(tmp_path):
    rng = np.random.default_rng(1)
    videos = rng.integers(0, 256, (2, 3, 40, 48, 3), dtype=np.uint8)
    references = np.clip(videos.astype(int) + rng.integers(-40, 40, videos.shape), 0, 255).astype(np.uint8)
    with reference_modules() as ref:
        model, heads, trunk, _ = _reference(ref, "alex", tmp_path)
        with torch.no_grad():
            expected = np.array([
                np.mean([
                    model(ref.lpips.im2tensor(videos[n, f]), ref.lpips.im2tensor(references[n, f])).item()
                    for f in range(3)
                ])
                for n in range(2)
            ])
    ours = lpips_distance(load_lpips(heads, trunk), videos, references, batch_size=4)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=1e-4)


def test_lpips_loader_errors(tmp_path):
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "alex.pth")
    with pytest.raises(ConversionError, match="only the LPIPS heads"):
        load_lpips(tmp_path / "alex.pth")
    with pytest.raises(ConversionError, match="lin1.model.1.weight"):  # AlexNet heads do not fit VGG (128 channels)
        load_lpips(tmp_path / "alex.pth", tmp_path / "alex.pth", net="vgg")
    with pytest.raises(ConversionError, match="unknown LPIPS net"):
        load_lpips(tmp_path / "alex.pth", net="squeeze")
