"""The four example models: trained a few steps, exported in both modes, compared with eager torch and served by a real server."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
httpclient = pytest.importorskip("tritonclient.http")

from examples import cnn, residual_mlp, tabular, transformer  # noqa: E402
from examples.common import NEAREST_MAX_ERROR, Example, main, train  # noqa: E402
from lutnet import metadata  # noqa: E402
from lutnet.export import export_module  # noqa: E402
from lutnet.export.verify import output_scale, relative_errors  # noqa: E402
from tests.export.checkpoints import CARD_KEYS, LUT_KEYS  # noqa: E402
from tests.service.server import Server  # noqa: E402

EXAMPLES = {e.name: e for e in (residual_mlp.EXAMPLE, cnn.EXAMPLE, tabular.EXAMPLE, transformer.EXAMPLE)}
ROWS = {"cnn": 192}  # convolutions train slowest on 2 cores: fewer rows and steps keep the suite short
STEPS = {"cnn": 8}
LINEAR_TOLERANCE = 1e-5


class Exported:
    """One example trained and exported (linear as version 1, nearest as version 2), with held-out inputs and eager outputs."""

    def __init__(self, example: Example, repository: Path) -> None:
        torch.manual_seed(0)
        inputs, targets = example.data(ROWS.get(example.name, 512) + 128, 0)
        train_inputs, self.test_inputs = tuple(x[:-128] for x in inputs), tuple(x[-128:] for x in inputs)
        self.model = train(example.build(), train_inputs, targets[:-128], example.task, STEPS.get(example.name, 30))
        options = {"task": example.task, "labels": example.labels, "input_names": example.input_names, "repository": repository, "name": example.name}
        self.linear = export_module(self.model, train_inputs, **options)
        self.nearest = export_module(self.model, train_inputs, mode="nearest", max_error=NEAREST_MAX_ERROR, **options)
        with torch.no_grad():
            self.eager = self.model(*self.test_inputs).numpy()
        self.names = [i.name for i in self.linear.graph.input]
        self.example = example

    def feeds(self) -> dict[str, np.ndarray]:
        return {name: x.numpy() for name, x in zip(self.names, self.test_inputs, strict=True)}

    def run(self, proto: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, self.feeds())[0]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def exported(repository: Path) -> dict[str, Exported]:
    return {name: Exported(example, repository) for name, example in EXAMPLES.items()}


@pytest.fixture(scope="module")
def server(repository: Path, exported: dict[str, Exported], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(repository, "--workers", "1", log=tmp_path_factory.mktemp("log") / "server.log")
    yield running
    assert running.stop()


def card(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_linear_export_equals_eager_on_held_out_inputs(exported: dict[str, Exported], name: str) -> None:
    """onnxruntime on the fused linear export equals the eager module to 1e-5 of the output scale; classes agree."""
    model = exported[name]
    fused = model.run(model.linear)
    errors = relative_errors(fused.reshape(len(fused), -1), model.eager.reshape(len(fused), -1), output_scale(model.eager.reshape(len(fused), -1), len(fused)))
    assert errors.max() <= LINEAR_TOLERANCE
    if model.example.task == "classification":
        assert np.mean(fused.argmax(1) == model.eager.argmax(1)) >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_nearest_export_stays_within_its_reported_bound(exported: dict[str, Exported], name: str) -> None:
    """The nearest export deviates from the eager (linear) module on held-out inputs by at most the bound it was asked for."""
    model = exported[name]
    fused = model.run(model.nearest)
    reported = float(card(model.nearest)[metadata.MERGE_MAX_ERROR])
    flat_eager = model.eager.reshape(len(fused), -1)
    deviation = relative_errors(fused.reshape(len(fused), -1), flat_eager, output_scale(flat_eager, len(fused))).max()
    assert 0 < reported <= NEAREST_MAX_ERROR and deviation <= NEAREST_MAX_ERROR
    assert card(model.nearest)[metadata.LUT_MODE] == "nearest"
    if model.example.task == "classification":
        assert np.mean(fused.argmax(1) == model.eager.argmax(1)) >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_export_is_one_plain_float32_graph_with_a_card(exported: dict[str, Exported], name: str) -> None:
    """No custom operators, the full check passes, the batch is dynamic, and the model card names the tensors."""
    for proto in (exported[name].linear, exported[name].nearest):
        onnx.checker.check_model(proto, full_check=True)
        assert {n.domain for n in proto.graph.node} <= {""} and "Lookup" not in {n.op_type for n in proto.graph.node}
        assert "GatherElements" in {n.op_type for n in proto.graph.node}
        assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer if t.data_type != onnx.TensorProto.INT64)
        assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in (*proto.graph.input, *proto.graph.output))
        values = card(proto)
        floats = np.asarray(exported[name].test_inputs[0]).dtype.kind == "f"  # a feature range needs numbers, not token ids
        assert CARD_KEYS - LUT_KEYS - ({metadata.INPUT_RANGE} if not floats else set()) <= set(values)
        assert values[metadata.INPUT_NAME] == exported[name].names[0] and values[metadata.TASK] == EXAMPLES[name].task
        assert json.loads(values[metadata.LABELS]) == list(EXAMPLES[name].labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("binary", [False, True])
def test_served_by_lutnet_serve_over_v2(exported: dict[str, Exported], server: Server, name: str, binary: bool) -> None:
    """A real ``lutnet serve`` answers tritonclient's v2 requests (JSON and binary) with the eager module's outputs, both versions."""
    model = exported[name]
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    requests = []
    for tensor_name, x in zip(model.names, model.test_inputs, strict=True):
        request = httpclient.InferInput(tensor_name, list(x.shape), "FP32" if x.is_floating_point() else "INT64")
        request.set_data_from_numpy(x.numpy(), binary_data=binary)
        requests.append(request)
    output_name = model.linear.graph.output[0].name
    for version, proto in (("1", model.linear), ("2", model.nearest)):
        outputs = [httpclient.InferRequestedOutput(output_name, binary_data=binary)]
        served = client.infer(name, requests, model_version=version, outputs=outputs).as_numpy(output_name)
        np.testing.assert_allclose(served, model.run(proto), rtol=0, atol=1e-6 * max(1.0, float(np.abs(model.eager).max())))
    assert client.is_model_ready(name, "2")


def test_the_example_script_exports_both_modes_or_fails_cleanly_with_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = ["--rows", "300", "--steps", "20"]
    unreachable = tmp_path / "unreachable"
    assert main(tabular.EXAMPLE, [*short, "--repository", str(unreachable), "--max-error", "1e-9"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --max-error 1e-09") and "4096 bins" in error and "\n" not in error
    assert not (unreachable / "tabular").exists() and not (unreachable / "tabular-nearest").exists()
    models = tmp_path / "models"
    assert main(tabular.EXAMPLE, [*short, "--repository", str(models)]) == 0  # the default bound
    assert (models / "tabular" / "1" / "model.onnx").is_file() and (models / "tabular-nearest" / "1" / "model.onnx").is_file()
