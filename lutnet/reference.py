"""The numpy reference of a whole separated model: what every fused graph and torch model must equal."""
from __future__ import annotations

import numpy as np

from lutnet.checkpoint import Checkpoint
from lutnet.errors import LutnetError
from lutnet.lut import activation_function, bin_coordinate, lut_forward


def forward(checkpoint: Checkpoint, x: np.ndarray, *, mode: str | None = None) -> np.ndarray:
    """Model outputs (logits, or de-standardized values for regression) for raw inputs ``x``, in float64.

    ``mode`` overrides the LUT mode of the checkpoint (``None`` keeps the trained one).
    """
    h = hidden_layers(checkpoint, x, mode)[-1][1]
    head_weight, head_bias = (np.asarray(checkpoint.tensors[f"head.{k}"], dtype=np.float64) for k in ("weight", "bias"))
    out = h.reshape(len(h), -1) @ head_weight.T + head_bias
    return out * checkpoint.target_std + checkpoint.target_mean if checkpoint.task == "regression" else out


def saturation(checkpoint: Checkpoint, x: np.ndarray) -> np.ndarray:
    """Per LUT layer, the fraction of pre-activations on ``x`` outside the layer's tables (table coordinate u outside [0, K])."""
    spec = checkpoint.spec
    if spec.activation != "lut":
        return np.zeros(0)
    fractions = []
    for i, (z, _) in enumerate(hidden_layers(checkpoint, x)):
        lo, hi = (np.broadcast_to(checkpoint.tensors[f"act.{i}.{k}"], (z.shape[1],)) for k in ("lo", "hi"))
        u = bin_coordinate(z, lo, hi, spec.lut.bins)
        fractions.append(float(np.mean((u < 0) | (u > spec.lut.bins))))
    return np.array(fractions)


def hidden_layers(checkpoint: Checkpoint, x: np.ndarray, mode: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each hidden layer's pre-activation and its output (after pooling), in float64."""
    spec = checkpoint.spec
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != tuple(spec.input_shape):
        raise LutnetError("input shape", expected=["batch", *spec.input_shape], got=list(x.shape))
    shape = [1, -1] + [1] * (x.ndim - 2)
    h = (x - checkpoint.input_mean.reshape(shape)) / checkpoint.input_std.reshape(shape)
    t = {name: np.asarray(value, dtype=np.float64) for name, value in checkpoint.tensors.items()}
    layers = []
    for i in range(len(spec.hidden)):
        w, b = t[f"hidden.{i}.weight"], t[f"hidden.{i}.bias"]
        z = h @ w.T + b if spec.family == "mlp" else conv2d_same(h, w) + b[None, :, None, None]
        h = activate(z, spec.activation, t, i, mode or spec.lut.mode, spec.lut.extrapolate)
        if spec.family == "convnet":
            h = pool2x2(h, spec.pool)
        layers.append((z, h))
    return layers


def activate(h: np.ndarray, activation: str, tensors: dict[str, np.ndarray], layer: int, mode: str, extrapolate: str) -> np.ndarray:
    """Apply activation layer ``layer`` (channels on axis 1)."""
    if activation in ("relu", "gelu"):
        return activation_function(activation)(h)
    table, lo, hi = (tensors[f"act.{layer}.{k}"] for k in ("table", "lo", "hi"))
    return lut_forward(h, table, lo, hi, mode, extrapolate, channel_axis=1)


def conv2d_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-1 cross-correlation with zero 'same' padding: ``[B, Ci, H, W] * [Co, Ci, k, k] -> [B, Co, H, W]``."""
    k = w.shape[-1]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2:]
    patches = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))  # (B, Ci, H, W, k, k)
    return np.einsum("bihwkl,oikl->bohw", patches[:, :, :height, :width], w, optimize=True)


def pool2x2(x: np.ndarray, kind: str) -> np.ndarray:
    """2x2 pooling with stride 2 (odd trailing rows and columns are dropped, as in torch)."""
    b, c, height, width = x.shape
    blocks = x[:, :, : height // 2 * 2, : width // 2 * 2].reshape(b, c, height // 2, 2, width // 2, 2)
    return blocks.max(axis=(3, 5)) if kind == "max" else blocks.mean(axis=(3, 5))


def predict_proba(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
