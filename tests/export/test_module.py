"""export_module on small modules: where each coordinate map goes, random architectures, and the errors that write nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from torch import nn  # noqa: E402

from lutnet import metadata  # noqa: E402
from lutnet.errors import LutnetError  # noqa: E402
from lutnet.export import export_module  # noqa: E402
from lutnet.export.lookups import lower_lookups  # noqa: E402
from lutnet.export.repository import RepositoryError  # noqa: E402
from lutnet.export.torch_module import ModuleExportError, _torch_export  # noqa: E402
from lutnet.lut import lut_forward  # noqa: E402
from lutnet.ranges import InputRange  # noqa: E402
from lutnet.training import ChannelError, LUTActivation, calibrate, lut_layers, replace_activations  # noqa: E402


def run(proto: object, *inputs: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)})[0]


def eager(model: nn.Module, *inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(*inputs).numpy()


class Blocks(nn.Module):
    """Linear -> LUT, Conv -> BatchNorm -> LUT, residual sum -> LUT, LayerNorm -> LUT: every kind of producer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.act_conv = LUTActivation(4, bins=8, extrapolate="linear")
        self.linear = nn.Linear(64, 16)
        self.act_linear = LUTActivation(16, bins=8, init="gelu", extrapolate="linear")
        self.skip = nn.Linear(64, 16)
        self.act_sum = LUTActivation(16, bins=8, init="silu", extrapolate="clamp")
        self.norm = nn.LayerNorm(16)
        self.act_norm = LUTActivation(16, bins=8, init="tanh", shared=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act_conv(self.bn(self.conv(x))).flatten(1)  # (B, 64)
        z = self.act_linear(self.linear(h))  # (B, 16)
        z = self.act_sum(z + self.skip(h))
        return self.head(self.act_norm(self.norm(z)))


def trained_blocks() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, x = Blocks(), torch.randn(64, 2, 4, 4)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        for layer in (model.act_conv, model.act_linear, model.act_sum, model.act_norm):
            layer.table.add_(0.1 * torch.randn_like(layer.table))
    return calibrate(model.eval(), x), x


def test_each_map_folds_where_its_producer_can_take_it() -> None:
    """Conv (BatchNorm folded in first) and Linear take the map; a residual sum and a LayerNorm output keep one Mul and one Add."""
    model, x = trained_blocks()
    with torch.no_grad():
        lowered = lower_lookups(_torch_export(model, (x,), ["input"], ["output"], 20))
    folded = {lookup.name: lookup.folded_into for lookup in lowered.lookups}
    assert folded == {"act_conv": "Conv", "act_linear": "Gemm", "act_sum": None, "act_norm": None}
    assert "BatchNormalization" not in {n.op_type for n in lowered.proto.graph.node}


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_folded_and_unfolded_graphs_equal_the_eager_module(mode: str) -> None:
    """With and without folding, onnxruntime agrees with eager torch (nearest: away from pocket edges, bounded by verification)."""
    model, x = trained_blocks()
    options = {"mode": mode, "bins_out": 64} if mode == "nearest" else {}
    folded, unfolded = export_module(model, x, **options), export_module(model, x, fold=False, **options)
    assert sum(n.op_type == "Mul" for n in unfolded.graph.node) > sum(n.op_type == "Mul" for n in folded.graph.node)
    expected = eager(model, x)
    tolerance = 1e-5 if mode == "linear" else 0.1
    for proto in (folded, unfolded):
        assert np.abs(run(proto, x) - expected).max() <= tolerance * np.abs(expected).max()


def test_channels_last_layer_equals_the_numpy_reference() -> None:
    """A LUT on [B, T, C] (dim=-1) computes lut_forward along the last axis, in torch and in the exported graph."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 6), LUTActivation(dim=-1, bins=8, init="gelu", extrapolate="linear"), nn.Linear(6, 2))
    x = 3 * torch.randn(16, 7, 5)
    calibrate(model, x[:4])
    layer = model[1]
    with torch.no_grad():
        z = model[0](x)
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    reference = lut_forward(as_np(z), as_np(layer.table), as_np(layer.lo), as_np(layer.hi), "linear", "linear", channel_axis=2)
    np.testing.assert_allclose(as_np(layer(z)), reference, atol=1e-5)
    proto = export_module(model, x)
    assert [n.op_type for n in proto.graph.node][:2] == ["MatMul", "Add"]  # the map folded into the Linear's MatMul and bias
    np.testing.assert_allclose(run(proto, x), eager(model, x), atol=1e-5)


def test_replaced_activations_start_as_the_functions_they_replace() -> None:
    """replace_activations keeps the model's outputs up to interpolation error and only swaps the chosen modules."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    x = torch.randn(256, 4)
    before = eager(model, x)
    replace_activations(model, names=["1", "3"], bins=64, example_inputs=x)
    assert [type(m).__name__ for m in model] == ["Linear", "LUTActivation", "Linear", "LUTActivation", "Linear", "ReLU", "Linear"]
    assert model[1].init == "gelu" and model[3].init == "tanh" and model[1].channels == 32
    calibrate(model, x, percentiles=(0.0, 100.0))
    assert np.abs(eager(model, x) - before).max() <= 5e-3 * np.abs(before).max()


def test_a_wide_feature_map_gathers_along_its_positions_without_transposes() -> None:
    """The placeholder records the positions after the channels (8 x 8), so the lookup skips the transposes."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), LUTActivation(3, bins=8, extrapolate="linear"), nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    x = 2 * torch.randn(16, 2, 8, 8)
    calibrate(model.eval(), x)
    proto = export_module(model, x)
    ops = {n.op_type for n in proto.graph.node}
    assert "Expand" in ops and "Transpose" not in ops
    for rows in (x[:1], x):
        expected = eager(model, rows)
        np.testing.assert_allclose(run(proto, rows), expected, atol=1e-5 * np.abs(expected).max())


@st.composite
def architectures(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    """An MLP or a channels-first/-last stack of random depth and widths with LUTs at random places."""
    torch.manual_seed(draw(st.integers(0, 2**16)))
    layout = draw(st.sampled_from(["features", "sequence", "image"]))
    widths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    layers: list[nn.Module] = []
    fan_in = 3
    for width in widths:
        layers.append(nn.Conv2d(fan_in, width, 1) if layout == "image" else nn.Linear(fan_in, width))
        if draw(st.booleans()):
            layers.append(LUTActivation(dim=-1 if layout == "sequence" else 1, bins=draw(st.sampled_from([4, 8])),
                                        extrapolate=draw(st.sampled_from(["clamp", "linear"])), init=draw(st.sampled_from(["relu", "tanh"]))))
        else:
            layers.append(nn.ReLU())
        fan_in = width
    model = nn.Sequential(*layers, LUTActivation(dim=-1 if layout == "sequence" else 1, bins=6))
    shape = {"features": (32, 3), "sequence": (32, 5, 3), "image": (32, 3, 2, 2)}[layout]
    x = 2 * torch.randn(shape)
    return calibrate(model.eval(), x), x


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architecture=architectures())
def test_random_architectures_export_and_match_eager(architecture: tuple[nn.Module, torch.Tensor]) -> None:
    """Any stack of Linear/Conv and LUT layers, channels first or last, exports verified and equals eager torch."""
    model, x = architecture
    proto = export_module(model, x)
    expected = eager(model, x)
    assert np.abs(run(proto, x) - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear, self.act = nn.Linear(3, 3), LUTActivation(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.linear(x))
        return h * 2 if h.sum() > 0 else h  # a branch on tensor values


class Untranslatable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), LUTActivation(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(self.inner(x))  # torch.onnx has no translation of Bessel functions


def test_wrong_channel_count_names_the_layer_and_both_counts() -> None:
    with pytest.raises(ChannelError, match=r"expected 4 channels, got 3"):
        LUTActivation(4)(torch.zeros(2, 3))


@pytest.mark.parametrize("case,error,message", [
    ("channels", ChannelError, r"expected 4 channels, got 3"),
    ("control_flow", ModuleExportError, r"data-dependent control flow"),
    ("operator", ModuleExportError, r"operator prims\.bessel_j0\.default \(called in the top-level module\) has no ONNX translation"),
    ("inputs", ModuleExportError, r"example_inputs \[\[8, 5\]\]: expected inputs the model accepts"),
    ("batch", ModuleExportError, r"example_inputs batch: expected the same number of rows \(at least 2\)"),
])
def test_bad_exports_are_one_clear_error_and_write_nothing(tmp_path: Path, case: str, error: type, message: str) -> None:
    model, x = {
        "channels": (nn.Sequential(nn.Linear(4, 3), LUTActivation(4)), torch.randn(8, 4)),
        "control_flow": (Branching(), torch.randn(8, 3)),
        "operator": (Untranslatable(), torch.randn(8, 4)),
        "inputs": (nn.Sequential(nn.Linear(4, 4), LUTActivation(4)), torch.randn(8, 5)),
        "batch": (nn.Sequential(nn.Linear(4, 4), LUTActivation(4)), torch.randn(1, 4)),
    }[case]
    with pytest.raises(error, match=message):
        export_module(model, x, out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_and_existing_version_fail_before_any_work(tmp_path: Path) -> None:
    model, x = nn.Sequential(nn.Linear(4, 4), LUTActivation(4)), torch.randn(8, 4)
    with pytest.raises(LutnetError, match=r"expected a path in an existing, writable folder"):
        export_module(model, x, out=tmp_path / "missing" / "m.onnx")
    export_module(model, x, repository=tmp_path / "models", name="tiny", version=1)
    with pytest.raises(RepositoryError, match=r"version 1 of model 'tiny': expected a version that does not exist yet"):
        export_module(model, x, repository=tmp_path / "models", name="tiny", version=1)
    assert sorted(p.name for p in (tmp_path / "models" / "tiny").iterdir()) == ["1", "config.pbtxt"]


def test_a_module_export_carries_its_calibration_ranges_and_a_monitor_graph(tmp_path: Path) -> None:
    """Input range from the example inputs, every lookup's tables, and monitor.onnx whose saturation equals numpy's."""
    model, x = trained_blocks()
    export_module(model, x, repository=tmp_path / "models", name="blocks", version=1)
    folder = tmp_path / "models" / "blocks" / "1"
    card = {p.key: p.value for p in onnx.load(folder / "model.onnx").metadata_props}
    input_range = InputRange.from_dict(json.loads(card[metadata.INPUT_RANGE]))
    np.testing.assert_allclose(input_range.lo, np.percentile(x.double().numpy().reshape(len(x), -1), 0.5, axis=0))
    layers = lut_layers(model)
    assert len(json.loads(card[metadata.LUT_TABLES])) == len(layers)
    probe = torch.cat([x, 5 * x])
    monitor = ort.InferenceSession(str(folder / "monitor.onnx"), providers=["CPUExecutionProvider"])
    saturation = monitor.run([metadata.SATURATION_OUTPUT], {monitor.get_inputs()[0].name: probe.numpy()})[0]
    pre_activations = []
    hooks = [layer.register_forward_pre_hook(lambda layer, args: pre_activations.append(args[0].detach().double().numpy())) for layer in layers]
    with torch.no_grad():
        model(probe)
    for hook in hooks:
        hook.remove()
    def outside(z: np.ndarray, layer: LUTActivation) -> float:
        z = np.moveaxis(z, layer.dim, -1)  # channels last, to meet lo and hi
        return float(np.mean((z < layer.lo.double().numpy()) | (z > layer.hi.double().numpy())))

    expected = [outside(z, layer) for z, layer in zip(pre_activations, layers, strict=True)]
    np.testing.assert_allclose(saturation, expected, atol=1e-6)
