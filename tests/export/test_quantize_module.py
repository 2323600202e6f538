"""export_module(quantize="int8"): sequential torch models to the int8 graph, verified, and the models it refuses by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from torch import nn  # noqa: E402

from lutnet import metadata  # noqa: E402
from lutnet.export import export_module  # noqa: E402
from lutnet.export.quantize import QuantizationError  # noqa: E402
from lutnet.export.torch_module import ModuleExportError  # noqa: E402
from lutnet.export.verify import VerificationError  # noqa: E402
from lutnet.training import LUTActivation, calibrate  # noqa: E402


def run(proto: object, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(x).numpy()


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), LUTActivation(6, bins=8, init="silu"), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 16), LUTActivation(16, bins=8, init="gelu", extrapolate="linear"), nn.Linear(16, 4),
    )
    x = torch.randn(256, 1, 8, 8)
    model.train()
    model(x)  # BatchNorm statistics that are not the identity
    calibrate(model.eval(), x)
    return model.eval()


def test_sequential_cnn_exports_int8_close_to_the_eager_module(tmp_path: Path) -> None:
    model, x = small_cnn(), torch.randn(256, 1, 8, 8)
    proto = export_module(model, x[:64], quantize="int8", calibration_data=x, verify_data=x[64:], out=tmp_path / "model.onnx",
                          max_accuracy_drop=0.1)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("QLinearMatMul") == 1 and ops.count("GatherElements") == 3 and "Conv" not in ops
    card = {p.key: p.value for p in proto.metadata_props}
    record = json.loads(card[metadata.QUANTIZATION])
    assert record["exact"] is True and record["calibration"] == {**record["calibration"], "rows": 256, "source": "calibration data given to export_module"}
    assert record["evaluation"]["metric"] == "class_agreement" and record["evaluation"]["rows"] == 192
    assert card[metadata.FAMILY] == "module" and card[metadata.ACTIVATION] == "lut"
    got, want = run(proto, x[64:]), eager(model, x[64:])
    assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= 0.9
    assert np.sqrt(np.mean((got - want) ** 2)) <= 0.1 * np.abs(want).max()
    assert (tmp_path / "model.onnx").is_file()


def test_targets_give_the_accuracy_change(tmp_path: Path) -> None:
    model, x = small_cnn(), torch.randn(200, 1, 8, 8)
    y = torch.from_numpy(eager(model, x).argmax(axis=1))
    proto = export_module(model, x[:50], quantize="int8", calibration_data=x, verify_data=x, verify_targets=y, max_accuracy_drop=0.2)
    evaluation = json.loads({p.key: p.value for p in proto.metadata_props}[metadata.QUANTIZATION])["evaluation"]
    assert evaluation["metric"] == "accuracy" and evaluation["float"] == 1.0 and evaluation["int8"] == pytest.approx(1.0 + evaluation["change"])
    with pytest.raises(ModuleExportError, match="verify_targets: expected 200 rows"):
        export_module(model, x[:50], verify_data=x, verify_targets=y[:10], quantize="int8")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 12), min_size=1, max_size=3), kinds=st.lists(st.sampled_from(["lut", "relu", "gelu"]), min_size=3, max_size=3),
       seed=st.integers(0, 1000))
def test_random_sequential_mlps_export_int8_exactly(widths: list[int], kinds: list[str], seed: int) -> None:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    features = 5
    for width, kind in zip(widths, kinds, strict=False):
        activation = {"lut": lambda w: LUTActivation(w, bins=8), "relu": lambda w: nn.ReLU(), "gelu": lambda w: nn.GELU()}[kind](width)
        layers += [nn.Linear(features, width), activation]
        features = width
    model = nn.Sequential(*layers, nn.Linear(features, 3)).eval()
    x = torch.randn(64, 5)
    model(x)
    proto = export_module(model, x, quantize="int8", max_accuracy_drop=1.0)
    assert json.loads({p.key: p.value for p in proto.metadata_props}[metadata.QUANTIZATION])["exact"] is True


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.head = nn.Linear(5, 5), LUTActivation(5, bins=8), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.a(x)) + x)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.head = nn.Linear(5, 5), LUTActivation(5, bins=8), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.a(x + z)))


@pytest.mark.parametrize(("model", "inputs", "message"), [
    (Residual(), (torch.randn(32, 5),), "used 2 times \\(a residual or a branch\\)"),
    (nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), LUTActivation(4, bins=8), nn.Linear(4, 2)), (torch.randn(32, 5),), "LayerNormalization"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)), (torch.randn(32, 1, 8, 8),), "strides"),
    (nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2)), (torch.randn(32, 5),), "no activation between them"),
    (TwoInputs(), (torch.randn(32, 5), torch.randn(32, 5)), "one input and one output"),
    (nn.Sequential(nn.Linear(5, 4), LUTActivation(4, bins=8), nn.Linear(4, 2)), (torch.randn(8, 5),), "at least 16 finite rows"),
])
def test_models_int8_cannot_take_are_refused_by_name_and_nothing_is_written(model: nn.Module, inputs: tuple, message: str, tmp_path: Path) -> None:
    model.eval()
    model(*inputs)
    with pytest.raises((QuantizationError, ModuleExportError), match=message):
        export_module(model, inputs if len(inputs) > 1 else inputs[0], quantize="int8", out=tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_int8_below_the_accuracy_bound_writes_nothing(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 16), LUTActivation(16, bins=8), nn.Linear(16, 4)).eval()
    x = torch.randn(256, 5)
    model(x)
    assert len(np.unique(eager(model, x).argmax(axis=1))) > 1  # classes that vary, or agreement proves nothing
    squeezed = 1e-3 * torch.randn(32, 5)  # a calibration far narrower than the data: most codes saturate
    with pytest.raises(VerificationError, match="int8 classes agree with the float model on .* less than"):
        export_module(model, x, calibration_data=squeezed, quantize="int8", out=tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_int8_refuses_float_lookup_options() -> None:
    model = nn.Sequential(nn.Linear(5, 4), LUTActivation(4, bins=8), nn.Linear(4, 2)).eval()
    with pytest.raises(Exception, match="--mode with --quantize"):
        export_module(model, torch.randn(32, 5), quantize="int8", mode="nearest")
