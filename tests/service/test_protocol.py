"""The v2 request decoder: its short route for small JSON tensors decodes exactly what its numpy route does."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lutnet.service.errors import BadRequest
from lutnet.service.protocol import SHORT_LIST, TensorSpec, decode_document, decode_infer_request

INPUT = TensorSpec("input", "FP32", (-1, 4))
OUTPUT = TensorSpec("output", "FP32", (-1, 3))
NUMBERS = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 3.4e38, 0.1, 2**53 + 1, 2**70, -(2**70), True, "1.5", None, [1.0]]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


def decoded(data: Any, datatype: str, rows: int, allow_nonfinite: bool) -> Any:
    tensor = {"name": "input", "datatype": datatype, "shape": [rows, 4], "data": data}
    try:
        return decode_document({"inputs": [tensor]}, b"", 0, [INPUT], [OUTPUT], max_batch_size=1024, allow_nonfinite=allow_nonfinite).inputs["input"]
    except BadRequest as exc:
        return exc


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@settings(max_examples=600, deadline=None)
@given(
    rows=st.integers(1, 3),
    values=st.lists(st.floats(-1e6, 1e6, width=32) | st.integers(-1000, 1000), min_size=12, max_size=12),
    bent=st.lists(st.tuples(st.integers(0, 11), NUMBERS), max_size=2),
    datatype=st.sampled_from(["FP32", "FP64", "FP16", "INT32"]),
    allow_nonfinite=st.booleans(),
)
def test_a_flat_list_decodes_as_the_same_values_nested(rows: int, values: list[Any], bent: list[tuple[int, Any]], datatype: str, allow_nonfinite: bool) -> None:
    """A flat list of at most SHORT_LIST values may take the short route; nested lists always take numpy's. Same answer."""
    values = values[: rows * 4]
    for index, value in bent:
        values[index % len(values)] = value
    flat = decoded(values, datatype, rows, allow_nonfinite)
    nested = decoded([values[i * 4 : (i + 1) * 4] for i in range(rows)], datatype, rows, allow_nonfinite)
    if isinstance(nested, BadRequest):
        assert isinstance(flat, BadRequest), f"the short route accepted what the numpy route rejects: {nested}"
        return
    assert not isinstance(flat, BadRequest), f"the short route rejected what the numpy route accepts: {flat}"
    assert flat.dtype == nested.dtype == np.float32 and flat.shape == nested.shape
    np.testing.assert_array_equal(flat, nested)


def test_the_common_requests_decode_through_the_one_entry_point() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = orjson.dumps({"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]})
    request = decode_infer_request(body, None, [INPUT], [OUTPUT], max_batch_size=1024, allow_nonfinite=False)
    assert request.id == "a" and request.rows == 2 and not request.binary_default
    np.testing.assert_array_equal(request.inputs["input"], x)
    header = orjson.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}], "parameters": {"binary_data_output": True}}
    )
    request = decode_infer_request(header + x.tobytes(), str(len(header)), [INPUT], [OUTPUT], max_batch_size=1024, allow_nonfinite=False)
    assert request.binary_default and request.rows == 2
    np.testing.assert_array_equal(request.inputs["input"], x)


def test_long_lists_and_overflowing_values_are_judged_by_the_numpy_route() -> None:
    """Past SHORT_LIST values, or for values beyond float32, the result is numpy's, errors included."""
    spec = TensorSpec("input", "FP32", (-1, SHORT_LIST + 1))
    values = np.linspace(-1, 1, SHORT_LIST + 1).tolist()
    body = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, SHORT_LIST + 1], "data": values}]})
    request = decode_infer_request(body, None, [spec], [OUTPUT], max_batch_size=1024, allow_nonfinite=False)
    np.testing.assert_array_equal(request.inputs["input"][0], np.array(values, dtype=np.float32))
    overflow = decoded([1e39, 0, 0, 0], "FP32", 1, allow_nonfinite=False)
    assert isinstance(overflow, BadRequest) and "expected finite numbers" in str(overflow)
