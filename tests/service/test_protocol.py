"""The simple decoder is a shortcut, never a second opinion: what it accepts, the general decoder decodes the same way."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lutnet.service.errors import BadRequest
from lutnet.service.protocol import TensorSpec, decode_document, decode_infer_request, decode_simple, decode_simple_binary

INPUT = TensorSpec("input", "FP32", (-1, 4))
OUTPUT = TensorSpec("output", "FP32", (-1, 3))
NUMBERS = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 3.4e38, 0.1, 2**70, -(2**70), True, "1.5", None]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


def mostly(usual: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else one of ``others``."""
    return st.sampled_from([usual] * 4 * len(others) + list(others))


@st.composite
def near_simple_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Requests in the simple form, some of them bent in one or more ways the simple decoder must not accept."""
    rows = draw(mostly(2, 0, 1, 3))
    width = draw(mostly(4, 3))
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32) | st.integers(-1000, 1000), min_size=rows * width, max_size=rows * width))
    if draw(st.booleans()) and values:
        values[draw(st.integers(0, len(values) - 1))] = draw(NUMBERS)
    data: Any = [values[i * width : (i + 1) * width] for i in range(rows)] if draw(st.booleans()) else values
    tensor: dict[str, Any] = {
        "name": draw(mostly("input", "x")),
        "datatype": draw(mostly("FP32", "FP64", "INT32")),
        "shape": draw(mostly([rows, width], [rows * width], [rows, width, 1], [rows, 2.0])),
        "data": data,
    }
    if draw(st.integers(0, 5)) == 0:
        tensor["parameters"] = {}
    document: dict[str, Any] = {"inputs": [tensor]}
    extra = draw(mostly(None, "id", "bad_id", "outputs", "parameters"))
    if extra == "id":
        document["id"] = "req-1"
    elif extra == "bad_id":
        document["id"] = 7
    elif extra == "outputs":
        document["outputs"] = [{"name": "output"}]
    elif extra == "parameters":
        document["parameters"] = {"binary_data_output": True}
    return document


def strict_json(value: Any) -> bool:
    """Whether ``value`` holds no NaN or Infinity, as a document parsed from strict JSON (orjson) never does."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(strict_json(v) for v in value.values())
    if isinstance(value, list):
        return all(strict_json(v) for v in value)
    return True


def general(document: Any, max_batch_size: int, allow_nonfinite: bool, body: bytes = b"", json_end: int = 0) -> Any:
    try:
        return decode_document(document, body, json_end, [INPUT], [OUTPUT], max_batch_size=max_batch_size, allow_nonfinite=allow_nonfinite)
    except BadRequest as exc:
        return exc


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@settings(max_examples=600, deadline=None)
@given(document=near_simple_documents(), max_batch_size=st.sampled_from([2, 1024]), allow_nonfinite=st.booleans())
def test_what_the_simple_decoder_accepts_the_general_decoder_decodes_identically(document: dict[str, Any], max_batch_size: int, allow_nonfinite: bool) -> None:
    simple = decode_simple(document, INPUT, max_batch_size, allow_nonfinite, finite_numbers=strict_json(document))
    if simple is None:
        return
    full = general(document, max_batch_size, allow_nonfinite)
    assert not isinstance(full, BadRequest), f"the simple decoder accepted what the general one rejects: {full}"
    assert (simple.id, simple.rows, simple.outputs, simple.binary_default) == (full.id, full.rows, full.outputs, full.binary_default)
    assert simple.inputs.keys() == full.inputs.keys() == {"input"}
    a, b = simple.inputs["input"], full.inputs["input"]
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@st.composite
def near_simple_binary_requests(draw: st.DrawFn) -> tuple[dict[str, Any], bytes, int]:
    """Binary requests in the form tritonclient sends, some bent in ways the simple binary decoder must not accept."""
    rows = draw(mostly(2, 0, 1, 3))
    values = np.array(draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=rows * 4, max_size=rows * 4)), dtype=np.float32)
    if draw(st.booleans()) and values.size:
        values[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3.4e38]))
    dtype = draw(mostly(np.float32, np.float64))
    blob = values.astype(dtype).tobytes()
    size = draw(mostly(len(blob), len(blob) + 4, float(len(blob)), True))
    tensor: dict[str, Any] = {
        "name": draw(mostly("input", "x")),
        "datatype": draw(mostly("FP32", "FP64")),
        "shape": draw(mostly([rows, 4], [rows * 4], [rows, 4, 1])),
        "parameters": draw(mostly({"binary_data_size": size}, {"binary_data_size": size, "extra": 1}, [])),
    }
    document: dict[str, Any] = {"inputs": [tensor]}
    extra = draw(mostly(None, "binary_out", "binary_out_bad", "id", "outputs", "other_parameter"))
    if extra == "binary_out":
        document["parameters"] = {"binary_data_output": draw(st.booleans())}
    elif extra == "binary_out_bad":
        document["parameters"] = {"binary_data_output": "yes"}
    elif extra == "id":
        document["id"] = "r"
    elif extra == "outputs":
        document["outputs"] = [{"name": "output", "parameters": {"binary_data": True}}]
    elif extra == "other_parameter":
        document["parameters"] = {"priority": 1}
    header = orjson.dumps(document)
    tail = draw(mostly(b"", b"\0\0\0\0"))
    return document, header + blob + tail, len(header)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=600, deadline=None)
@given(request=near_simple_binary_requests(), max_batch_size=st.sampled_from([2, 1024]), allow_nonfinite=st.booleans())
def test_what_the_simple_binary_decoder_accepts_the_general_decoder_decodes_identically(
    request: tuple[dict[str, Any], bytes, int], max_batch_size: int, allow_nonfinite: bool
) -> None:
    document, body, json_end = request
    simple = decode_simple_binary(document, body, json_end, INPUT, max_batch_size, allow_nonfinite)
    if simple is None:
        return
    full = general(document, max_batch_size, allow_nonfinite, body, json_end)
    assert not isinstance(full, BadRequest), f"the simple binary decoder accepted what the general one rejects: {full}"
    assert (simple.id, simple.rows, simple.outputs, simple.binary_default) == (full.id, full.rows, full.outputs, full.binary_default)
    a, b = simple.inputs["input"], full.inputs["input"]
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_the_common_binary_request_takes_the_simple_decoder() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    header = orjson.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}], "parameters": {"binary_data_output": True}}
    )
    decoded = decode_simple_binary(orjson.loads(header), header + x.tobytes(), len(header), INPUT, 1024, False)
    assert decoded is not None and decoded.binary_default and decoded.rows == 2
    np.testing.assert_array_equal(decoded.inputs["input"], x)
    via_entry = decode_infer_request(header + x.tobytes(), str(len(header)), [INPUT], [OUTPUT], max_batch_size=1024, allow_nonfinite=False)
    np.testing.assert_array_equal(via_entry.inputs["input"], x)


def test_the_common_request_takes_the_simple_decoder_and_the_rest_do_not() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    common = {"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]}
    for finite_numbers in (False, True):  # the numpy route, and the short-list route strict JSON allows
        decoded = decode_simple(common, INPUT, 1024, False, finite_numbers=finite_numbers)
        assert decoded is not None and decoded.id == "a" and decoded.rows == 2 and decoded.inputs["input"].dtype == np.float32
        np.testing.assert_array_equal(decoded.inputs["input"], x)
        for bent in ({**common, "outputs": [{"name": "output"}]}, {"inputs": [{**common["inputs"][0], "data": ["1"] * 8}]}):
            assert decode_simple(bent, INPUT, 1024, False, finite_numbers=finite_numbers) is None
    # Through the public entry point, the same body decodes the same either way.
    via_entry = decode_infer_request(orjson.dumps(common), None, [INPUT], [OUTPUT], max_batch_size=1024, allow_nonfinite=False)
    np.testing.assert_array_equal(via_entry.inputs["input"], x)
