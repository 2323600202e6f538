"""Any torch module with LUT layers to a verified, fused ONNX model: the one export module that needs torch.

torch is imported only when :func:`export_module` runs, so ``lutnet export CKPT`` never loads it. The
module goes through PyTorch's own exporter (``torch.onnx.export(..., dynamo=True)``), taught one thing:
the ``lutnet::lut_lookup`` operator every ``LUTActivation`` calls while exporting becomes a placeholder
node, which ``lutnet.export.lookups`` (numpy and onnx only) folds and replaces by the lookup graph that the
built-in families use. Verification compares onnxruntime with the eager module on the example inputs and
on probes far outside every table's range.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from lutnet import __version__, metadata
from lutnet.atomic import write_bytes_atomic
from lutnet.errors import LutnetError
from lutnet.ranges import InputRange, LayerTable
from lutnet.repository import MONITOR_FILE
from lutnet.export import repository
from lutnet.export.exporter import check_quantize, check_resolution, check_writable
from lutnet.export.fold import GRIDS
from lutnet.export.graph import DEFAULT_OPSET, check_opset
from lutnet.export.lookups import DOMAIN, OP_TYPE, LookupSettings, LoweredModel, is_placeholder, lower_lookups
from lutnet.export.quantize import (MAX_ACCURACY_DROP, MAX_RMSE_INCREASE, QuantizedVerification, build_quantized_graph, module_chain,
                                    quantization_card, quantize_chain, verify_quantized)
from lutnet.export.monitor import Coordinate, monitor_graph, range_card, saturation_baseline
from lutnet.export.verify import CLASS_AGREEMENT, Verification, VerificationError, compare, pocket_edge_samples, run_session, smallest_bins

if TYPE_CHECKING:
    import torch
    from torch import nn

TASKS = ("classification", "regression")
EXTREME_SCALES = (10.0, 1000.0)  # float probe inputs: the examples times these, plus +-1e4 times each input's spread
HUGE = 1e4
FAMILY = "module"


class ModuleExportError(LutnetError):
    """A module that torch.onnx cannot capture, or an export request that does not fit the module; nothing is written."""


@dataclass(frozen=True)
class Target:
    """Where the export goes: a file, or a repository version (resolved before any work, so a taken version fails first)."""

    out: Path | None
    repository: Path | None
    name: str
    version: int


def export_module(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor,
    *,
    out: str | os.PathLike[str] | None = None,
    repository: str | os.PathLike[str] | None = None,
    name: str | None = None,
    version: int | None = None,
    task: str = "classification",
    labels: Sequence[str] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    mode: str | None = None,
    bins_out: int | None = None,
    max_error: float | None = None,
    fold: bool = True,
    opset: int = DEFAULT_OPSET,
    verify_data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
    quantize: str | None = None,
    calibration_data: torch.Tensor | None = None,
    verify_targets: torch.Tensor | None = None,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    max_rmse_increase: float = MAX_RMSE_INCREASE,
) -> onnx.ModelProto:
    """Export ``model`` (in eval mode) to one fused, verified float32 ONNX model with a dynamic batch dimension; returns it.

    ``example_inputs`` are one batch (at least 2 rows) of the model's inputs, a tensor or a tuple for several
    inputs; they, plus ``verify_data`` if given, are the typical probes of verification. With ``out`` the
    model is written to that file, with ``repository`` and ``name`` to ``repository/name/version/model.onnx``
    in Triton's layout (next free version by default); with neither it is only returned. ``mode``
    (``linear`` or ``nearest``), ``bins_out`` and ``max_error`` mean what they mean for ``lutnet export``.
    ``fold=False`` keeps every coordinate map as a ``Mul`` and an ``Add`` (to measure what folding gains).
    Every failure raises a ``LutnetError`` (``VerificationError`` when the fused model does not match) and
    writes nothing.

    ``quantize="int8"`` exports the int8 graph of ``lutnet export --quantize int8`` instead, for sequential models
    (``lutnet.export.quantize.SEQUENTIAL``) with one input and one output. It calibrates on ``calibration_data``
    (default: the example inputs; at least 16 rows), is verified bit for bit against the integer reference, and
    its accuracy (or RMSE) against ``verify_targets`` (targets of ``verify_data``, else of the example inputs) must
    stay within ``max_accuracy_drop`` (``max_rmse_increase``) of the eager module's; without targets, classes must
    agree on all but ``max_accuracy_drop`` of the rows.
    """
    import torch

    target = _target(out, repository, name, version)
    if quantize is not None:
        check_quantize(quantize, mode, bins_out, max_error, max_accuracy_drop, max_rmse_increase)
    check_resolution(mode, bins_out, max_error)
    check_opset(opset)
    if task not in TASKS:
        raise ModuleExportError("task", expected=f"one of {list(TASKS)}", got=repr(task))
    inputs = _as_inputs(example_inputs, "example_inputs")
    extra = None if verify_data is None else _as_inputs(verify_data, "verify_data")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = _run(model, inputs, "example_inputs")
            input_names, output_names = _names(input_names, len(inputs), "input"), _names(output_names, len(outputs), "output")
            source = _torch_export(model, inputs, input_names, output_names, opset)
            if quantize is not None:
                proto, checked = _int8(model, source, inputs, extra, outputs, calibration_data, verify_targets, task,
                                       input_names, output_names, opset, max_accuracy_drop, max_rmse_increase)
                card = model_card(model, proto, [], task, labels, target, None) | training_ranges([], inputs, extra)
                card[metadata.ACTIVATION] = "lut" if any(is_placeholder(node) for node in source.graph.node) else "none"
                card |= quantization_card(checked, _calibration(inputs, calibration_data), "calibration data given to export_module"
                                          if calibration_data is not None else "the example inputs")
                helper.set_model_props(proto, card)
                onnx.checker.check_model(proto, full_check=True)
                _write(proto, target, None)
                return proto
            probes = _probes(inputs, extra)
            if max_error is not None:
                bins_out = _choose_bins(model, probes, mode, max_error, task)
            lowered = lower_lookups(source, mode=mode, bins=bins_out, fold=fold)
            verification = _verify(model, lowered, probes, input_names, task, mode, bins_out, max_error)
    finally:
        model.train(was_training)
    if not verification.passed:
        raise VerificationError("verification failed, nothing written: " + "; ".join(verification.failures))
    proto, monitor = lowered.proto, _monitor(lowered)
    settings = [lookup.settings for lookup in lowered.lookups]
    card = model_card(model, proto, settings, task, labels, target, verification.deviation) | training_ranges(settings, inputs, extra)
    if monitor is not None:
        card |= saturation_baseline(monitor, _feeds(input_names, inputs, extra))
    helper.set_model_props(proto, card)
    onnx.checker.check_model(proto, full_check=True)
    _write(proto, target, None if monitor is None else monitor.SerializeToString())
    return proto


def _int8(model: nn.Module, source: onnx.ModelProto, inputs: tuple[torch.Tensor, ...], extra: tuple[torch.Tensor, ...] | None,
          outputs: tuple[torch.Tensor, ...], calibration_data: torch.Tensor | None, verify_targets: torch.Tensor | None, task: str,
          input_names: list[str], output_names: list[str], opset: int, max_accuracy_drop: float,
          max_rmse_increase: float) -> tuple[onnx.ModelProto, QuantizedVerification]:
    """The verified int8 graph of a sequential module (see ``export_module``)."""
    if len(inputs) != 1 or len(outputs) != 1 or outputs[0].dim() != 2:
        raise ModuleExportError("quantize='int8'", expected="a model with one input and one output [batch, outputs]",
                                got=f"{len(inputs)} inputs, outputs {[list(o.shape) for o in outputs]}")
    chain = module_chain(source)
    qmodel = quantize_chain(chain, _calibration(inputs, calibration_data))
    proto = build_quantized_graph(qmodel, num_outputs=int(outputs[0].shape[1]), card={}, opset=opset,
                                  input_name=input_names[0], output_name=output_names[0])
    probes = _probes(inputs, extra)
    evaluation = extra[0] if extra is not None else inputs[0]
    targets = None
    if verify_targets is not None:
        targets = verify_targets.detach().cpu().numpy()
        if len(targets) != len(evaluation):
            raise ModuleExportError("verify_targets", expected=f"{len(evaluation)} rows, one per row of verify_data (else of example_inputs)",
                                    got=list(targets.shape))
    float_outputs = _run(model, (evaluation,), "verify_data")[0].double().numpy()
    checked = verify_quantized(proto, qmodel, probes.inputs[0].numpy(), evaluation.numpy(), float_outputs, targets,
                               classification=task == "classification", max_accuracy_drop=max_accuracy_drop, max_rmse_increase=max_rmse_increase)
    if not checked.passed:
        raise VerificationError("int8 verification failed, nothing written: " + "; ".join(checked.failures))
    return proto, checked


def _calibration(inputs: tuple[torch.Tensor, ...], calibration_data: torch.Tensor | None) -> np.ndarray:
    rows = inputs[0] if calibration_data is None else _as_inputs(calibration_data, "calibration_data")[0]
    return rows.detach().double().cpu().numpy()


def _target(out: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None, name: str | None, version: int | None) -> Target:
    if out is not None and root is not None:
        raise ModuleExportError("out and repository", expected="at most one of them", got="both")
    if (root is None) != (name is None) or (version is not None and root is None):
        got = f"name={name!r}, version={version!r}"
        raise ModuleExportError("name and version", expected="name (and optionally version) together with repository", got=got)
    if out is not None:
        check_writable(Path(out))
        return Target(Path(out), None, Path(out).stem, 1)
    if root is not None:
        return Target(None, Path(root), name, repository.resolve_version(root, name, version))
    return Target(None, None, "model", 1)


def _as_inputs(value: Any, what: str) -> tuple[torch.Tensor, ...]:
    import torch

    inputs = value if isinstance(value, tuple) else (value,)
    kinds = [type(v).__name__ for v in inputs if not isinstance(v, torch.Tensor)]
    if not inputs or kinds:
        raise ModuleExportError(what, expected="a tensor or a tuple of tensors", got=kinds or "an empty tuple")
    rows = {int(v.shape[0]) if v.dim() else 0 for v in inputs}
    if len(rows) != 1 or min(rows) < 2:
        raise ModuleExportError(f"{what} batch", expected="the same number of rows (at least 2) in every input", got=[list(v.shape) for v in inputs])
    return tuple(v.detach().cpu() for v in inputs)


def _run(model: nn.Module, inputs: tuple[torch.Tensor, ...], what: str) -> tuple[torch.Tensor, ...]:
    """The eager outputs as a tuple of tensors; a model that rejects the inputs is an error naming them."""
    import torch

    try:
        result = model(*inputs)
    except LutnetError:
        raise
    except Exception as exc:  # a model may raise anything on inputs it does not take
        raise ModuleExportError(f"{what} {[list(v.shape) for v in inputs]}", expected="inputs the model accepts",
                                got=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    outputs = result if isinstance(result, tuple) else (result,)
    if not all(isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == inputs[0].shape[0] for o in outputs):
        raise ModuleExportError("model outputs", expected="a tensor or a tuple of tensors with the batch dimension first",
                                got=[list(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outputs])
    return outputs


def _names(names: Sequence[str] | None, count: int, what: str) -> list[str]:
    if names is None:
        return [getattr(metadata, f"DEFAULT_{what.upper()}_NAME")] if count == 1 else [f"{what}_{i}" for i in range(count)]
    names = list(names)
    if len(names) != count or len(set(names)) != count or not all(isinstance(n, str) and n for n in names):
        raise ModuleExportError(f"{what}_names", expected=f"{count} distinct non-empty names (the model has {count} {what}s)", got=names)
    return names


def _torch_export(model: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str], opset: int) -> onnx.ModelProto:
    """Capture with ``torch.export`` (batch dimension dynamic), then ``torch.onnx`` with the lookup as a placeholder node."""
    import torch

    batch = torch.export.Dim("batch")
    try:
        program = torch.export.export(model, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs), strict=False)
    except Exception as exc:  # torch.export raises many types; each is turned into one message naming the problem
        raise ModuleExportError("torch.export of the module", expected="a graph it can capture", got=_capture_problem(exc)) from None
    _register_placeholder_schema()
    try:
        onnx_program = torch.onnx.export(program, inputs, dynamo=True, custom_translation_table={torch.ops.lutnet.lut_lookup.default: _placeholder},
                                         input_names=input_names, output_names=output_names, opset_version=opset, optimize=True, verbose=False)
    except Exception as exc:  # torch.onnx's ConversionError and what it wraps
        raise ModuleExportError("torch.onnx translation of the module", expected="operators ONNX can express", got=_translation_problem(exc, program)) from None
    proto = onnx_program.model_proto
    _name_placeholders(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def _capture_problem(exc: Exception) -> str:
    text = str(exc)
    if "data-dependent" in text or "GuardOnDataDependent" in type(exc).__name__:
        where = next((line.strip() for line in text.splitlines() if line.strip().startswith("File ") or "in forward" in line), "")
        return f"data-dependent control flow (a Python branch or loop on tensor values), which one graph cannot capture {where}".strip()
    if "batch" in text and ("specializ" in text or "Constraints violated" in text):
        return "a model that fixes the batch size (the exported graph keeps it dynamic): " + text.splitlines()[0]
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _translation_problem(exc: BaseException, program: Any) -> str:
    """The operator torch.onnx could not translate and the module path that calls it, when the error names one.

    torch.onnx reports the operator after decomposition (``prims.bessel_j0`` for ``aten.special_bessel_j0``), so the
    module is that of the captured operator whose name ends with the reported one.
    """
    text = "\n".join(str(e) for e in _chain(exc))
    reported = re.search(r"target=torch\.ops\.([\w.]+)", text)
    if reported is None:
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    operator = reported.group(1)
    base = operator.split(".")[1] if "." in operator else operator
    paths = [list((node.meta.get("nn_module_stack") or {"": ("", None)}).values())[-1][0] for node in program.graph.nodes
             if node.op == "call_function" and str(getattr(node.target, "_opname", "")).endswith(base)]
    where = f"module {paths[0]!r}" if paths and paths[0] else "the top-level module"
    return f"operator {operator} (called in {where}) has no ONNX translation"


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _register_placeholder_schema() -> None:
    """onnxscript builds nodes only for operators with a schema: declare the placeholder once per process."""
    from onnx.defs import OpSchema

    if onnx.defs.has(OP_TYPE, DOMAIN):
        return
    tensor = lambda name: OpSchema.FormalParameter(name, "T")  # noqa: E731
    attribute = lambda name, kind: OpSchema.Attribute(name, kind, name)  # noqa: E731
    onnx.defs.register_schema(OpSchema(
        OP_TYPE, DOMAIN, 1, inputs=[tensor("x"), tensor("table"), tensor("lo"), tensor("hi")], outputs=[tensor("y")],
        type_constraints=[("T", ["tensor(float)"], "float32 tensors")],
        attributes=[attribute(k, OpSchema.AttrType.INT) for k in ("dim", "rank", "channels", "positions")]
        + [attribute(k, OpSchema.AttrType.STRING) for k in ("mode", "extrapolate")],
    ))


def _placeholder(x: Any, table: Any, lo: Any, hi: Any, dim: int, channels: int, mode: str, extrapolate: str) -> Any:
    """The translation of ``lutnet::lut_lookup``: one placeholder node that ``lower_lookups`` replaces."""
    from onnxscript import values

    rank = len(x.shape)
    after = list(x.shape)[dim + 1 :]
    positions = math.prod(after) if all(isinstance(d, int) for d in after) else 0  # 0: a dimension only known at run time
    return values.Op(values.Opset(DOMAIN, 1), OP_TYPE)(x, table, lo, hi, dim=dim, rank=rank, channels=channels, positions=positions,
                                                        mode=mode, extrapolate=extrapolate)


def _name_placeholders(proto: onnx.ModelProto) -> None:
    """Name each placeholder node by the module path of its LUT layer (torch.onnx records the module scopes)."""
    for node in proto.graph.node:
        if is_placeholder(node):
            scopes = {m.key: m.value for m in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
            if scopes:
                node.name = ast.literal_eval(scopes)[-2]  # cumulative scopes: the last but one is the layer's full path


@dataclass(frozen=True)
class Probes:
    """Verification inputs, one tensor per model input: typical rows first, then ``extreme_from`` onward the extreme ones."""

    inputs: tuple[torch.Tensor, ...]
    typical: int


def _probes(inputs: tuple[torch.Tensor, ...], extra: tuple[torch.Tensor, ...] | None, seed: int = 0) -> Probes:
    """The examples (and ``verify_data``), then zeros, far-out and huge rows for float inputs; other inputs repeat example rows."""
    import torch

    if extra is not None:
        if len(extra) != len(inputs) or any(e.shape[1:] != i.shape[1:] or e.dtype != i.dtype for e, i in zip(extra, inputs, strict=False)):
            raise ModuleExportError("verify_data", expected=[[ "rows", *i.shape[1:]] for i in inputs], got=[list(e.shape) for e in extra])
        inputs = tuple(torch.cat([i, e]) for i, e in zip(inputs, extra, strict=True))
    generator = torch.Generator().manual_seed(seed)
    rows = len(inputs[0])
    picks = torch.randint(rows, (3 * rows + 1,), generator=generator)
    probes = []
    for x in inputs:
        if not x.is_floating_point():
            probes.append(torch.cat([x, x[picks]]))
            continue
        mean, spread = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-3)
        far = [mean + scale * spread * torch.randn(x.shape, generator=generator, dtype=x.dtype) for scale in EXTREME_SCALES]
        huge = HUGE * spread * torch.randint(2, x.shape, generator=generator).mul(2).sub(1).to(x.dtype)
        probes.append(torch.cat([x, torch.zeros_like(x[:1]), *far, huge]))
    return Probes(tuple(probes), rows)


def _exported_copy(model: nn.Module, mode: str | None, bins: int | None) -> nn.Module:
    """The model whose tables are the export's: resampled to ``bins`` and evaluated in ``mode`` (``model`` itself if neither)."""
    from lutnet.training.convert import lut_layers

    if mode is None and bins is None:
        return model
    exported = copy.deepcopy(model)
    for layer in lut_layers(exported):
        layer.resample_(layer.lo.double().numpy(), layer.hi.double().numpy(), bins or layer.bins, mode or layer.mode)
    return exported


def _eager(model: nn.Module, probes: Probes) -> list[np.ndarray]:
    return [o.double().numpy() for o in _run(model, probes.inputs, "verification probes")]


def _choose_bins(model: nn.Module, probes: Probes, mode: str | None, max_error: float, task: str) -> int:
    from lutnet.training.convert import lut_layers

    layers = lut_layers(model)
    if not layers:
        raise ModuleExportError("max_error", expected="a model with LUT layers", got="none")
    trained = _eager(model, probes)
    def check(bins: int) -> tuple[float, bool]:
        outputs = _eager(_exported_copy(model, mode, bins), probes)
        verdict = compare(outputs, outputs, trained, probes.typical, np.zeros(len(trained[0]), dtype=bool), classification=task == "classification")
        return verdict.deviation, verdict.class_agreement is None or verdict.class_agreement >= CLASS_AGREEMENT

    return smallest_bins(max(layer.bins for layer in layers), check, max_error)


def _verify(model: nn.Module, lowered: LoweredModel, probes: Probes, input_names: list[str], task: str, mode: str | None, bins: int | None,
            max_error: float | None) -> Verification:
    """onnxruntime on the fused graph against the eager module (trained and with the exported tables) on the probes."""
    exported = _exported_copy(model, mode, bins)
    nearest = [lookup for lookup in lowered.lookups if lookup.settings.mode == "nearest"]
    feeds = {name: x.numpy() for name, x in zip(input_names, probes.inputs, strict=True)}
    fused, coordinates = run_session(lowered.proto, feeds, [lookup.coordinate for lookup in nearest])
    expected_outputs, recorded = _eager_with_coordinates(exported, probes, nearest)
    edge = pocket_edge_samples(coordinates, recorded, [lookup.segments for lookup in nearest]) if nearest else np.zeros(len(fused[0]), dtype=bool)
    trained = expected_outputs if exported is model else _eager(model, probes)
    return compare(fused, expected_outputs, trained, probes.typical, edge, classification=task == "classification",
                   max_error=max_error, resampled=exported is not model)


def _eager_with_coordinates(model: nn.Module, probes: Probes, lookups: list[Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Eager outputs and, for each of ``lookups``, the coordinate ``v`` its layer's inputs map to (the graph's grid)."""
    from lutnet.training.convert import named_lut_layers

    by_name = {name: layer for name, layer in named_lut_layers(model)}
    recorded: dict[str, list[np.ndarray]] = {lookup.name: [] for lookup in lookups}
    hooks = [by_name[name].register_forward_pre_hook(lambda layer, args, name=name: recorded[name].append(args[0].double().numpy()))
             for name in recorded if name in by_name]
    try:
        outputs = _eager(model, probes)
    finally:
        for hook in hooks:
            hook.remove()
    coordinates = []
    calls: dict[str, int] = {}
    for lookup in lookups:
        if not recorded.get(lookup.name):
            raise ModuleExportError(f"lookup {lookup.name!r} of the graph", expected="a LUT layer of the module by that name", got=sorted(by_name))
        x = recorded[lookup.name][calls.setdefault(lookup.name, 0)]
        calls[lookup.name] += 1
        rows, shift = lookup.settings.coordinate_map()
        shape = [1] * x.ndim
        shape[lookup.settings.dim] = -1
        coordinates.append(x * rows.reshape(shape) + shift.reshape(shape))
    return outputs, coordinates


def model_card(model: nn.Module, proto: onnx.ModelProto, settings: Sequence[LookupSettings], task: str, labels: Sequence[str] | None,
               target: Target, deviation: float | None) -> dict[str, str]:
    """Every ``lutnet.metadata`` key for an exported module (and the lut keys for the lookups of ``settings``, if any)."""
    first_input, first_output = proto.graph.input[0], proto.graph.output[0]
    card = {
        metadata.MODEL_NAME: target.name,
        metadata.MODEL_VERSION: str(target.version),
        metadata.TASK: task,
        metadata.INPUT_NAME: first_input.name,
        metadata.INPUT_SHAPE: json.dumps(_card_shape(first_input)),
        metadata.OUTPUT_NAME: first_output.name,
        metadata.OUTPUT_SHAPE: json.dumps(_card_shape(first_output)),
        metadata.LABELS: json.dumps([str(label) for label in labels or []]),
        metadata.FAMILY: FAMILY,
        metadata.ACTIVATION: "lut" if settings else "none",
        metadata.MERGE_MAX_ERROR: "null" if deviation is None else repr(deviation),
        metadata.SOURCE_SHA256: state_sha256(model),
        metadata.TRAINING_METRICS: json.dumps({}),
        metadata.LUTNET_VERSION: __version__,
    }
    if settings:
        one = lambda values: values[0] if len(set(values)) == 1 else json.dumps(values)  # noqa: E731
        card |= {metadata.LUT_MODE: one([s.mode for s in settings]), metadata.LUT_BINS: str(one([s.bins for s in settings])),
                 metadata.LUT_EXTRAPOLATE: one([s.extrapolate for s in settings])}
    return card


def _card_shape(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def state_sha256(model: nn.Module) -> str:
    """sha256 over the module's parameters and buffers (names and float32 bytes, in ``state_dict`` order)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def training_ranges(settings: Sequence[LookupSettings], inputs: tuple[torch.Tensor, ...], extra: tuple[torch.Tensor, ...] | None) -> dict[str, str]:
    """Card entries for the ranges the model was calibrated on: the first input's features over the example inputs
    (and ``verify_data``) when it is a float tensor, and every lookup's tables."""
    rows = [inputs[0]] if extra is None else [inputs[0], extra[0]]
    input_range = InputRange.of_samples(np.concatenate([x.detach().double().cpu().numpy() for x in rows])) if rows[0].is_floating_point() else None
    return range_card(input_range, [LayerTable(s.table, s.lo, s.hi) for s in settings])


def _feeds(names: Sequence[str], inputs: tuple[torch.Tensor, ...], extra: tuple[torch.Tensor, ...] | None) -> dict[str, np.ndarray]:
    """The example inputs (and ``verify_data``) as onnxruntime feeds."""
    parts = [inputs] if extra is None else [inputs, extra]
    return {name: np.concatenate([p[i].detach().cpu().numpy() for p in parts]) for i, name in enumerate(names)}


def _monitor(lowered: LoweredModel) -> onnx.ModelProto | None:
    """The monitor graph (per-layer saturation beside the outputs) of a model with lookups; None without any."""
    if not lowered.lookups:
        return None
    coordinates = []
    for lookup in lowered.lookups:
        scale, offset = GRIDS[lookup.settings.mode, lookup.settings.extrapolate]
        coordinates.append(Coordinate(lookup.coordinate, offset, scale * lookup.settings.bins + offset))
    return monitor_graph(lowered.proto, coordinates)


def _write(proto: onnx.ModelProto, target: Target, monitor: bytes | None) -> None:
    data = proto.SerializeToString()
    if target.out is not None:
        try:
            write_bytes_atomic(target.out, data)
        except OSError as exc:
            raise ModuleExportError(f"output {target.out}", expected="a writable file path", got=exc.strerror or str(exc)) from None
    elif target.repository is not None:
        config = repository.config_pbtxt_for(target.name, proto)
        repository.write_model(target.repository, target.name, target.version, data, config, {MONITOR_FILE: monitor} if monitor else None)
