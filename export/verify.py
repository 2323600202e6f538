"""Verification: the fused model (onnxruntime) against the numpy reference of the separated model.

Errors are relative to the output scale: per sample, the larger of that sample's largest reference
output and the largest reference output over the typical inputs (so huge outputs far outside the
ranges are judged relative to themselves, and near-zero outputs are not divided by nearly zero).

``nearest`` tables are discontinuous at pocket edges. Where a float32 coordinate lies within rounding
of an edge, the graph and the float64 reference may rightly pick neighbouring pockets, so samples with
a coordinate that close to an edge (``EDGE_TOLERANCE``) are counted as edge samples and held only to
the class-agreement rule; every other sample must match to ``TOLERANCE`` (``EXTREME_TOLERANCE`` on the
extreme probes).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from lutnet import metadata, reference
from lutnet.checkpoint import Checkpoint
from lutnet.errors import LutnetError
from lutnet.export.fold import FusedModel, exported_checkpoint, fold
from lutnet.export.graph import activation_output

TOLERANCE = 1e-5  # max |fused - reference| relative to the output scale on typical inputs
# On extreme inputs float32 sums of huge terms that cancel into a table's range carry rounding far above the merge
# error (any float32 model has it); they are there to check extrapolation, which a wrong merge breaks by O(1).
EXTREME_TOLERANCE = 1e-3
CLASS_AGREEMENT = 0.999  # share of typical samples whose predicted class must agree with the trained model
EDGE_TOLERANCE = 5e-7  # float32 rounding of a sum, relative to the magnitudes it adds up (4 float32 epsilons)
MAX_BINS = 4096  # largest resolution --max-error may choose
# A torch module's graph computes coordinates along other float32 paths than eager torch (folded weights, other
# kernels), and their rounding grows with the sums behind a coordinate, so no fixed distance to a pocket edge covers
# it: a lookup whose segment differs while both coordinates lie within half a segment of each other straddles an edge.
POCKET_EDGE_DISTANCE = 0.5


class VerificationError(LutnetError):
    """The fused model does not match the separated model closely enough; nothing is written."""


@dataclass(frozen=True)
class Probes:
    """Verification inputs: ``typical`` (test split or synthesized from the normalization) and ``extreme`` ones."""

    typical: np.ndarray
    extreme: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.concatenate([self.typical, self.extreme])


@dataclass(frozen=True)
class Verification:
    """What verification measured; ``failures`` is empty when it passed."""

    fidelity: float  # max relative |fused - reference of the exported tables| over typical non-edge samples
    extreme_fidelity: float  # the same over the extreme probes
    deviation: float  # max relative |fused - trained reference| over every sample: the model card's merge error
    class_agreement: float | None  # classification only, over the typical samples
    edge_samples: int
    samples: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        parts = [
            f"max error {self.fidelity:.2e} (typical) and {self.extreme_fidelity:.2e} (extreme inputs) vs the exported tables",
            f"deviation {self.deviation:.2e} from the trained model",
        ]
        if self.class_agreement is not None:
            parts.append(f"classes agree on {100 * self.class_agreement:.2f}%")
        if self.edge_samples:
            parts.append(f"{self.edge_samples} pocket-edge samples")
        return f"{'passed' if self.passed else 'FAILED'} on {self.samples} inputs: " + ", ".join(parts)


def probe_inputs(checkpoint: Checkpoint, data: np.ndarray | None = None, *, seed: int = 0, count: int = 256) -> Probes:
    """``data`` (or ``count`` draws from the input normalization) plus zeros, far-out and huge inputs."""
    spec = checkpoint.spec
    shape = (1, -1) + (1,) * (len(spec.input_shape) - 1)
    mean, std = checkpoint.input_mean.reshape(shape), checkpoint.input_std.reshape(shape)
    rng = np.random.default_rng(seed)
    draw = lambda n, spread: mean + spread * std * rng.standard_normal((n, *spec.input_shape))  # noqa: E731
    if data is None:
        typical = draw(count, 1.0)
    else:
        typical = np.asarray(data, dtype=np.float64)
        if typical.ndim < 1 or typical.shape[1:] != tuple(spec.input_shape) or len(typical) == 0:
            raise LutnetError("verification data shape", expected=["rows >= 1", *spec.input_shape], got=list(typical.shape))
        if not np.all(np.isfinite(typical)):
            raise LutnetError("verification data", expected="finite numbers", got="NaN or Inf")
    huge = 1e4 * std * rng.choice([-1.0, 1.0], size=(count // 4, *spec.input_shape))
    extreme = np.concatenate([np.zeros((1, *spec.input_shape)), draw(count // 4, 10.0), draw(count // 4, 1000.0), huge])
    return Probes(typical=typical.astype(np.float32), extreme=extreme.astype(np.float32))


def output_scale(expected: np.ndarray, typical_rows: int) -> np.ndarray:
    """Per-sample output scale (see the module docstring); the first ``typical_rows`` samples are the typical ones."""
    magnitude = np.abs(expected).max(axis=1)
    return np.maximum(np.maximum(magnitude, magnitude[:typical_rows].max(initial=0.0)), np.finfo(np.float64).tiny)


def relative_errors(outputs: np.ndarray, expected: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per-sample max ``|outputs - expected|`` over ``scale``; a non-finite output counts as an infinite error."""
    return np.nan_to_num(np.abs(outputs - expected).max(axis=1) / scale, nan=np.inf)


def run_fused(proto: onnx.ModelProto, x: np.ndarray, layers: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs of the fused model on ``x`` and the activation of each of its ``layers`` hidden layers."""
    (output,), activations = run_session(proto, {metadata.DEFAULT_INPUT_NAME: x}, [activation_output(i) for i in range(layers)])
    return output, activations


def run_session(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], extra: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The outputs of ``proto`` on ``feeds`` in onnxruntime, and the inner values named ``extra`` (made outputs of a copy)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    outputs = len(probe.graph.output)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in extra)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types for unsupported opsets and bad graphs
        raise VerificationError("fused model", expected="to load and run in onnxruntime", got=str(exc).splitlines()[0]) from None
    return values[:outputs], values[outputs:]


def edge_samples(model: FusedModel, x: np.ndarray, activations: list[np.ndarray]) -> np.ndarray:
    """Samples where some lookup's coordinate lies within float32 rounding of an inner segment edge.

    Each layer is recomputed in float64 from the fused model's own previous activation, so the rounding
    considered is that of one layer: ``EDGE_TOLERANCE`` times the sum of the magnitudes it accumulates.
    """
    edge = np.zeros(len(x), dtype=bool)
    h = np.asarray(x, dtype=np.float64)
    if model.input_shift is not None:
        h = h - model.input_shift.reshape((1, -1) + (1,) * (h.ndim - 2))
    for layer, activation in zip(model.layers, activations, strict=True):
        v, magnitude = _affine(h, layer.weight, layer.bias), _affine(np.abs(h), np.abs(layer.weight), np.abs(layer.bias))
        edges = np.round(v)
        close = (np.abs(v - edges) <= EDGE_TOLERANCE * magnitude) & (edges >= 1) & (edges <= layer.table.segments - 1)
        edge |= close.reshape(len(x), -1).any(axis=1)
        h = np.asarray(activation, dtype=np.float64)
        if model.family == "convnet":
            h = reference.pool2x2(h, model.pool)
    return edge


def _affine(h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    if weight.ndim == 2:
        return h @ weight.T + bias
    return reference.conv2d_same(h, weight) + bias[None, :, None, None]


def verify(proto: onnx.ModelProto, checkpoint: Checkpoint, exported: Checkpoint, probes: Probes, *, max_error: float | None = None) -> Verification:
    """Measure the fused ``proto`` against the exported tables and the trained model on ``probes``."""
    x, typical = probes.all, len(probes.typical)
    fused, activations = run_fused(proto, x, len(checkpoint.spec.hidden))
    nearest = exported.spec.activation == "lut" and exported.spec.lut.mode == "nearest"
    edge = edge_samples(fold(exported), x, activations) if nearest else np.zeros(len(x), dtype=bool)
    return compare(
        [fused], [reference.forward(exported, x)], [reference.forward(checkpoint, x)], typical, edge,
        classification=checkpoint.task == "classification", max_error=max_error, resampled=exported is not checkpoint,
    )


def compare(fused: list[np.ndarray], exported: list[np.ndarray], trained: list[np.ndarray], typical: int, edge: np.ndarray, *,
            classification: bool, max_error: float | None = None, resampled: bool = False) -> Verification:
    """The verdict on outputs over the same samples (the first ``typical`` typical, the rest extreme), one array per output.

    ``exported`` is the reference of the tables as exported, ``trained`` that of the trained model; pocket-``edge``
    samples are held to class agreement only. Errors are relative to each output's scale; the first output
    carries the classes.
    """
    errors = np.zeros(len(edge))
    deviations = np.zeros(len(edge))
    for out, expected, original in zip(fused, exported, trained, strict=True):
        out, expected, original = (np.asarray(a, dtype=np.float64).reshape(len(edge), -1) for a in (out, expected, original))
        scale = output_scale(original, typical)  # one scale for both comparisons: the trained model's outputs
        errors = np.maximum(errors, np.where(edge, 0.0, relative_errors(out, expected, scale)))
        deviations = np.maximum(deviations, relative_errors(out, original, scale))
    fidelity, extreme_fidelity = float(errors[:typical].max(initial=0.0)), float(errors[typical:].max(initial=0.0))
    deviation = float(deviations.max(initial=0.0))
    failures = []
    for where, error, tolerance in (("typical", fidelity, TOLERANCE), ("extreme", extreme_fidelity, EXTREME_TOLERANCE)):
        if error > tolerance:
            failures.append(f"fused model differs from the exported tables by {error:.3g} (relative) on {where} inputs, more than {tolerance:g}")
    if max_error is not None and deviation > max_error:
        failures.append(f"deviation from the trained model {deviation:.3g} exceeds --max-error {max_error:g}")
    agreement = None
    if classification:
        agreement = float(np.mean(np.asarray(fused[0])[:typical].argmax(axis=-1) == np.asarray(trained[0])[:typical].argmax(axis=-1)))
        if agreement < CLASS_AGREEMENT:
            hint = " (resampled tables: more bins or a smaller --max-error keep more)" if resampled else ""
            failures.append(f"predicted classes agree on {100 * agreement:.2f}% of typical inputs, less than {100 * CLASS_AGREEMENT:.1f}%{hint}")
    return Verification(fidelity, extreme_fidelity, deviation, agreement, int(edge.sum()), len(edge), tuple(failures))


def pocket_edge_samples(fused: list[np.ndarray], expected: list[np.ndarray], segments: list[int]) -> np.ndarray:
    """Samples where some ``nearest`` lookup's segment differs between the fused graph and the reference, across one edge.

    ``fused`` and ``expected`` hold each lookup's coordinates ``v`` (batch first) as the graph computed them
    and as the reference did; a sample counts when the segments differ while the two coordinates lie within
    ``POCKET_EDGE_DISTANCE`` of each other. A wrong fold or table still shows: on every sample whose
    segments agree, held to the tolerance, and in the class agreement.
    """
    edge = np.zeros(len(fused[0]) if fused else 0, dtype=bool)
    for got, want, count in zip(fused, expected, segments, strict=True):
        got, want = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (got, want))
        differ = np.floor(np.clip(got, 0, count - 1)) != np.floor(np.clip(want, 0, count - 1))
        near = np.abs(got - want) <= POCKET_EDGE_DISTANCE
        edge |= (differ & near).any(axis=1)
    return edge


def smallest_bins(bins: int, check: Callable[[int], tuple[float, bool]], max_error: float) -> int:
    """The smallest ``bins * 2^m`` (up to ``MAX_BINS``) whose ``check(bins)`` gives a deviation of at most ``max_error`` and
    classes that agree (the verification's class rule, which a resampled export must pass too)."""
    best, disagreed = np.inf, False
    while bins <= MAX_BINS:
        deviation, agree = check(bins)
        best, disagreed = min(best, deviation), disagreed or (deviation <= max_error and not agree)
        if deviation <= max_error and agree:
            return bins
        bins *= 2
    got = f"best deviation {best:.3g}" + (f"; where it was met, predicted classes agreed on less than {100 * CLASS_AGREEMENT:.1f}%" if disagreed else "")
    raise LutnetError(f"--max-error {max_error:g}", expected=f"a resolution of at most {MAX_BINS} bins that meets it", got=got)


def classes_agree(outputs: np.ndarray, trained: np.ndarray) -> bool:
    """Whether the predicted classes of ``outputs`` agree with ``trained``'s on at least ``CLASS_AGREEMENT`` of the rows."""
    return bool(np.mean(outputs.argmax(axis=-1) == trained.argmax(axis=-1)) >= CLASS_AGREEMENT)


def choose_bins(checkpoint: Checkpoint, mode: str | None, max_error: float, probes: Probes) -> int:
    """Smallest bins ``K * 2^m`` (up to ``MAX_BINS``) whose exported tables deviate at most ``max_error`` on ``probes``."""
    if checkpoint.spec.activation != "lut":
        raise LutnetError("--max-error", expected="a LUT model", got=f"a {checkpoint.spec.activation} baseline")
    x, typical = probes.all, len(probes.typical)
    trained = reference.forward(checkpoint, x)
    scale = output_scale(trained, typical)

    def check(bins: int) -> tuple[float, bool]:
        outputs = reference.forward(exported_checkpoint(checkpoint, mode, bins), x)
        agree = checkpoint.task != "classification" or classes_agree(outputs[:typical], trained[:typical])
        return float(relative_errors(outputs, trained, scale).max()), agree

    return smallest_bins(checkpoint.spec.lut.bins, check, max_error)
