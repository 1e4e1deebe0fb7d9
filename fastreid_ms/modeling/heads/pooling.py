"""Global pooling layers: backbone map (N, C, H, W) -> (N, C), chosen by MODEL.HEADS.POOL_LAYER.

POOLING_REGISTRY holds classes ``cls(p=...)`` (keyword arguments they do not use are ignored);
names follow fast-reid's where the layer is the same, and the historical "avgpool" /
"maxpool" stay valid:

* ``avgpool`` / ``GlobalAvgPool``           mean over the positions;
* ``maxpool`` / ``GlobalMaxPool``           max over the positions;
* ``GeneralizedMeanPooling``                GeM (Radenovic et al.), ``(mean x^p)^(1/p)`` with
  x clamped at ``eps`` and a fixed p (MODEL.HEADS.GEM_P, 3 by default) — AGW's pooling;
* ``GeneralizedMeanPoolingP``               GeM with p a trained parameter starting at GEM_P
  (SBS's pooling);
* ``AdaptiveAvgMaxPool``                    mean + max.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from ...utils.registry import Registry

POOLING_REGISTRY = Registry("POOLING")


@POOLING_REGISTRY.register()
class GlobalAvgPool(nn.Cell):
    """(N, C, H, W) -> (N, C): mean over H, W."""

    def __init__(self, **kwargs):
        super().__init__()

    def construct(self, x):
        return ops.mean(x, axis=(2, 3))


@POOLING_REGISTRY.register()
class GlobalMaxPool(nn.Cell):
    """(N, C, H, W) -> (N, C): max over H, W."""

    def __init__(self, **kwargs):
        super().__init__()

    def construct(self, x):
        return ops.amax(x, axis=(2, 3))


@POOLING_REGISTRY.register()
class AdaptiveAvgMaxPool(nn.Cell):
    """(N, C, H, W) -> (N, C): mean + max over H, W."""

    def __init__(self, **kwargs):
        super().__init__()

    def construct(self, x):
        return ops.mean(x, axis=(2, 3)) + ops.amax(x, axis=(2, 3))


def generalized_mean(x, p, eps=1e-6):
    """(N, C, H, W) -> (N, C): ``(mean_{h,w} max(x, eps)^p)^(1/p)``; ``p`` a float or a
    tensor of shape (1,) (computed in float32)."""
    x = ops.maximum(x.astype(ms.float32), eps)
    # A tensor p: 1 / p as a division of two tensors (a Reciprocal does not export to ONNX).
    inv_p = 1.0 / p if isinstance(p, float) else ops.div(ops.ones_like(p), p)
    return ops.pow(ops.mean(ops.pow(x, p), axis=(2, 3)), inv_p)


@POOLING_REGISTRY.register()
class GeneralizedMeanPooling(nn.Cell):
    """GeM with a fixed exponent ``p`` (1: average pooling, large: towards max pooling)."""

    def __init__(self, p=3.0, eps=1e-6, **kwargs):
        super().__init__()
        if not float(p) > 0:
            raise ValueError(f"MODEL.HEADS.GEM_P must be > 0, got {p}.")
        self.p = float(p)
        self.eps = float(eps)

    def construct(self, x):
        return generalized_mean(x, self.p, self.eps)


@POOLING_REGISTRY.register()
class GeneralizedMeanPoolingP(nn.Cell):
    """GeM whose exponent is a trained parameter ``p`` (shape (1,), starting at ``p``)."""

    def __init__(self, p=3.0, eps=1e-6, **kwargs):
        super().__init__()
        if not float(p) > 0:
            raise ValueError(f"MODEL.HEADS.GEM_P must be > 0, got {p}.")
        self.p = ms.Parameter(ms.Tensor([float(p)], ms.float32), name="p")
        self.eps = float(eps)

    def construct(self, x):
        # p stays (1,): a reshape to a 0-d tensor does not export to ONNX.
        return generalized_mean(x, self.p, self.eps)


# Historical names of EmbeddingHead's POOL_LAYER.
POOL_ALIASES = {"avgpool": "GlobalAvgPool", "maxpool": "GlobalMaxPool",
                "gempool": "GeneralizedMeanPooling", "gempoolP": "GeneralizedMeanPoolingP",
                "avgmaxpool": "AdaptiveAvgMaxPool"}


def pool_names():
    return sorted(set(POOL_ALIASES) | set(POOLING_REGISTRY.names()))


def build_pooling(name, **kwargs) -> nn.Cell:
    """The pooling layer ``name`` (a POOLING_REGISTRY name or an alias above)."""
    key = POOL_ALIASES.get(name, name)
    if key not in POOLING_REGISTRY.names():
        raise ValueError(f"MODEL.HEADS.POOL_LAYER '{name}' is not supported; use one of "
                         f"{pool_names()}.")
    return POOLING_REGISTRY.get(key)(**kwargs)
