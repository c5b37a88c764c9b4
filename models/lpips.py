"""LPIPS (Zhang et al. 2018, the ``lpips`` package, version 0.1) in Flax NNX: AlexNet or VGG16
features with learned per-channel linear heads.

Parameter paths mirror the two sources a user has: torchvision's ``features.{i}`` (the convolutions of
``alexnet().features`` / ``vgg16().features``, at torchvision's own indices; ReLU and max-pool entries
hold no parameters) and the lpips package's heads ``lin{k}.model.1`` (1x1 convolutions without bias;
``model.0`` is a dropout, the identity at evaluation). :mod:`convert.metrics_weights` fills them from
``alexnet-owt-*.pth`` / ``vgg16-*.pth`` and lpips' ``weights/v0.1/{alex,vgg}.pth``.

The distance between images x0, x1 in [-1, 1] ``[N, H, W, 3]``:

    d(x0, x1) = sum_k mean_{h,w} lin_k((n(f_k(s(x0))) - n(f_k(s(x1))))^2)

with s the scaling layer ((x - shift) / scale, ImageNet statistics in [-1, 1] units), f_k the k-th tap
(AlexNet relu1..relu5; VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) and n the channel-wise unit
normalisation x / (|x|_2 + 1e-10).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

NETS = ("alex", "vgg")
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class Conv:
    """A torchvision Conv2d(in, out, kernel, stride, padding) followed by nothing (the ReLU is its own entry)."""

    cin: int
    cout: int
    kernel: int
    stride: int = 1
    padding: int = 1


@dataclasses.dataclass(frozen=True)
class Pool:
    """A torchvision MaxPool2d(kernel, stride), floor mode, no padding."""

    kernel: int
    stride: int


RELU = "relu"


def _vgg16_layers() -> list:
    layers, cin = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if width == "M":
            layers.append(Pool(2, 2))
        else:
            layers += [Conv(cin, width, 3), RELU]
            cin = width
    return layers


# torchvision's feature stacks up to the last tap LPIPS reads, and the indices of those taps.
LAYERS = {
    "alex": [
        Conv(3, 64, 11, 4, 2), RELU, Pool(3, 2),
        Conv(64, 192, 5, 1, 2), RELU, Pool(3, 2),
        Conv(192, 384, 3), RELU,
        Conv(384, 256, 3), RELU,
        Conv(256, 256, 3), RELU,
    ],
    "vgg": _vgg16_layers(),
}
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


class ReLU(nnx.Module):
    """A parameter-free ReLU entry of the feature stack."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class MaxPool(nnx.Module):
    """A parameter-free max-pool entry of the feature stack ([N, H, W, C], VALID, floor)."""

    def __init__(self, kernel: int, stride: int):
        self.kernel, self.stride = kernel, stride

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel, self.stride
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), "VALID")


class NetLinLayer(nnx.Module):
    """lpips' ``NetLinLayer``: ``model.0`` dropout (identity here), ``model.1`` a 1x1 conv C -> 1 without bias."""

    def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.model = nnx.List([
            nnx.Dropout(0.5, deterministic=True),
            nnx.Conv(channels, 1, (1, 1), use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs),
        ])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.model[1](self.model[0](x))


class LPIPS(nnx.Module):
    """The LPIPS distance with an AlexNet (``net="alex"``, lpips' default) or VGG16 (``"vgg"``) trunk."""

    def __init__(self, net: str = "alex", *, dtype=jnp.float32, rngs: nnx.Rngs):
        if net not in NETS:
            raise ValueError(f"unknown LPIPS net {net!r}; supported: {', '.join(NETS)}")
        self.net = net
        entries = []
        for layer in LAYERS[net]:
            if isinstance(layer, Conv):
                p = layer.padding
                entries.append(nnx.Conv(
                    layer.cin, layer.cout, (layer.kernel, layer.kernel), strides=(layer.stride, layer.stride),
                    padding=((p, p), (p, p)), dtype=dtype, param_dtype=dtype, rngs=rngs,
                ))
            elif isinstance(layer, Pool):
                entries.append(MaxPool(layer.kernel, layer.stride))
            else:
                entries.append(ReLU())
        self.features = nnx.List(entries)
        for k, channels in enumerate(CHANNELS[net]):
            setattr(self, f"lin{k}", NetLinLayer(channels, dtype=dtype, rngs=rngs))

    def taps(self, x: jax.Array) -> list[jax.Array]:
        """The five feature maps LPIPS compares, for images in [-1, 1] [N, H, W, 3]."""
        shift = jnp.asarray(_SHIFT, jnp.float32)
        scale = jnp.asarray(_SCALE, jnp.float32)
        h = ((x.astype(jnp.float32) - shift) / scale).astype(self.features[0].kernel.dtype)
        out, taps = [], set(TAPS[self.net])
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in taps:
                out.append(h)
        return out

    def __call__(self, x0: jax.Array, x1: jax.Array) -> jax.Array:
        """LPIPS distance [N] between images x0, x1 in [-1, 1] [N, H, W, 3]."""
        if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[-1] != 3:
            raise ValueError(f"LPIPS takes two [N, H, W, 3] batches of equal shape, got {list(x0.shape)} and {list(x1.shape)}")
        total = jnp.zeros((x0.shape[0],), jnp.float32)
        for k, (a, b) in enumerate(zip(self.taps(x0), self.taps(x1))):
            a, b = a.astype(jnp.float32), b.astype(jnp.float32)
            diff = (_unit(a) - _unit(b)) ** 2  # [N, h, w, C]
            head = getattr(self, f"lin{k}")
            total = total + jnp.mean(head(diff.astype(a.dtype)).astype(jnp.float32), axis=(1, 2, 3))
        return total


def _unit(x: jax.Array) -> jax.Array:
    """lpips' ``normalize_tensor``: x / (|x|_2 over channels + 1e-10)."""
    return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + _EPS)
