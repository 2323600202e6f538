"""Open Inference Protocol (v2) codecs: JSON and binary tensor bodies in, JSON and binary bodies out, and the /v1 predict body.

Parsing is done by hand with orjson and numpy (no pydantic on the hot path). Every error is a
``BadRequest`` that names the tensor or field, what was expected and what was got.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from lutnet.reference import predict_proba
from lutnet.service.errors import BadRequest

HEADER_LENGTH = "inference-header-content-length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"

DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
    )
}
DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}
NUMERIC_KINDS = "biuf"
# Up to this many values, Python's min/max over the list and one numpy call beat three numpy calls on a server
# that idles between requests (cold caches make numpy's dispatch the larger cost); longer lists go through numpy.
SHORT_LIST = 256
EXACT_BOUND = 2.0**53  # integers up to this convert to float32 once, from the list or through float64 alike
BRIEF = reprlib.Repr()  # reprs for error messages: nesting past maxlevel is elided, long strings and lists cut short
BRIEF.maxlevel, BRIEF.maxstring, BRIEF.maxother, BRIEF.maxlist, BRIEF.maxdict = 4, 60, 60, 20, 8


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model: v2 datatype name and shape (-1 for a free dimension; the first is the batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPES[self.datatype]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class InferRequest:
    """A decoded v2 request: input arrays in the model's dtypes and which outputs to return, binary or not."""

    id: str | None
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: list[tuple[str, bool | None]] | None  # None: every output; a binary flag of None follows binary_default
    binary_default: bool

    def selected_outputs(self, names: Sequence[str], arrays: Sequence[np.ndarray]) -> list[tuple[str, np.ndarray, bool]]:
        """(name, array, binary) of each output to return, in the order asked for."""
        if self.outputs is None:
            return [(name, array, self.binary_default) for name, array in zip(names, arrays, strict=True)]
        by_name = dict(zip(names, arrays, strict=True))
        return [(name, by_name[name], self.binary_default if binary is None else binary) for name, binary in self.outputs]


def parse_json(data: bytes | memoryview, what: str = "request body") -> Any:
    """Decode JSON with a message that says where it broke; NaN and Infinity literals are accepted here and judged later."""
    if not len(data):
        raise BadRequest(what, expected="a JSON object", got="an empty body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:  # orjson refuses NaN/Infinity literals; the stdlib reads them so the finiteness check can name them.
            return json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest(what, expected="valid JSON", got=f"malformed JSON ({exc})") from None


def decode_infer_request(
    body: bytes, header_length: str | None, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *, max_batch_size: int | None, allow_nonfinite: bool
) -> InferRequest:
    """Decode a v2 infer body (JSON, or JSON header + binary tensor data) against the model's inputs and outputs."""
    json_end = _json_header_end(body, header_length)
    document = parse_json(body if json_end == len(body) else memoryview(body)[:json_end])
    return decode_document(document, body, json_end, inputs, outputs, max_batch_size=max_batch_size, allow_nonfinite=allow_nonfinite)


def decode_document(
    document: Any,
    body: bytes,
    json_end: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int | None,
    allow_nonfinite: bool,
) -> InferRequest:
    """The general decoder: every form the protocol allows, and a precise 400 for anything else."""
    if not isinstance(document, dict):
        raise BadRequest("request body", expected="a JSON object with 'inputs'", got=type(document).__name__)
    entries = document.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise BadRequest("'inputs'", expected="a non-empty list of tensors", got=_brief(entries))
    arrays, offset = {}, json_end
    specs = {spec.name: spec for spec in inputs}
    for entry in entries:
        spec = _input_spec(entry, specs, arrays)
        arrays[spec.name], offset = _decode_tensor(entry, spec, body, offset, allow_nonfinite)
    if missing := [name for name in specs if name not in arrays]:
        raise BadRequest("inputs", expected=f"tensors named {list(specs)}", got=f"no tensor for {missing}")
    if offset != len(body):
        raise BadRequest("binary tensor data", expected=f"{offset - json_end} bytes (the sum of binary_data_size)", got=f"{len(body) - json_end} bytes")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id'", expected="a string", got=_brief(request_id))
    parameters = _parameters(document, "request")
    return InferRequest(
        id=request_id,
        inputs=arrays,
        rows=_batch_rows(arrays, max_batch_size),
        outputs=_requested_outputs(document.get("outputs"), outputs),
        binary_default=_flag(parameters, "binary_data_output", "request"),
    )


def encode_infer_response(model_name: str, version: int, request_id: str | None, outputs: Sequence[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """v2 response body and, when any output is binary, the length of its JSON header (for ``Inference-Header-Content-Length``)."""
    entries, blobs = [], []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": DATATYPE_OF[array.dtype], "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()  # C order, whatever the array's layout
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel()  # C-contiguous (a copy only when the array is not), as orjson needs
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": str(version), "outputs": entries}
    if request_id is not None:
        document["id"] = request_id
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def decode_instances(body: bytes, spec: TensorSpec, *, max_batch_size: int | None, allow_nonfinite: bool) -> np.ndarray:
    """The rows of a /v1 predict body ``{"instances": [row, ...]}``; each row is nested or flat with the input's row size
    (nested with the input's row shape where that has free dimensions)."""
    document = parse_json(body)
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest("request body", expected='{"instances": [row, ...]} with at least one row', got=_brief(document))
    values = _numeric_array(instances, "'instances'")
    if -1 in spec.row_shape:
        _shape(list(values.shape), spec, "'instances'")
    else:
        row_size = math.prod(spec.row_shape)
        if values.size != len(instances) * row_size:
            expected = f"{len(instances)} rows of {row_size} numbers (row shape {list(spec.row_shape)})"
            raise BadRequest("'instances'", expected=expected, got=f"shape {list(values.shape)}")
        values = values.reshape(len(instances), *spec.row_shape)
    array = _json_numbers_as(values, spec.dtype, "'instances'")
    _check_finite(array, "'instances'", allow_nonfinite)
    _check_batch(len(instances), max_batch_size)
    return array


def encode_predictions(model_name: str, version: int, output: np.ndarray, task: str | None, labels: Sequence[str]) -> bytes:
    """The /v1 predict answer: label, class index and softmax probabilities per row, or the values for regression."""
    document: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    rows = output.reshape(len(output), -1)
    if task == "classification" or (task is None and labels):
        probabilities = predict_proba(rows.astype(np.float64)).astype(np.float32)
        names = list(labels) or [str(i) for i in range(rows.shape[1])]
        document["labels"] = names
        document["predictions"] = [
            {"label": names[i], "index": int(i), "probabilities": p} for i, p in zip(probabilities.argmax(axis=1), probabilities, strict=True)
        ]
    else:
        document["predictions"] = rows[:, 0] if rows.shape[1] == 1 else rows
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _json_header_end(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    try:
        end = int(header_length)
    except ValueError:
        end = -1
    if not 0 < end <= len(body):
        raise BadRequest("Inference-Header-Content-Length", expected=f"a byte count between 1 and the body size {len(body)}", got=repr(header_length))
    return end


def _input_spec(entry: Any, specs: Mapping[str, TensorSpec], seen: Mapping[str, np.ndarray]) -> TensorSpec:
    if not isinstance(entry, dict):
        raise BadRequest("each input", expected="an object with name, datatype, shape and data", got=_brief(entry))
    name = entry.get("name")
    if type(name) is not str or name not in specs:
        raise BadRequest("input name", expected=f"one of {list(specs)}", got=_brief(name))
    if name in seen:
        raise BadRequest(f"input {name!r}", expected="one tensor per input", got="the same name twice")
    return specs[name]


def _decode_tensor(entry: dict[str, Any], spec: TensorSpec, body: bytes, offset: int, allow_nonfinite: bool) -> tuple[np.ndarray, int]:
    """The input as an array of the model's dtype, and the offset of the next binary tensor."""
    what = f"input {spec.name!r}"
    datatype = entry.get("datatype")
    if type(datatype) is not str or datatype not in DATATYPES:
        got = "BYTES (string tensors are not supported)" if datatype == "BYTES" else _brief(datatype)
        raise BadRequest(f"{what} datatype", expected=f"{spec.datatype} or another numeric type from {list(DATATYPES)}", got=got)
    shape = _shape(entry.get("shape"), spec, what)
    count = math.prod(shape)
    size = _parameters(entry, what).get("binary_data_size")
    if size is None:
        values = _json_values(entry, DATATYPES[datatype], count, what, allow_nonfinite)
    else:
        values, offset = _binary_values(entry, DATATYPES[datatype], count, body, offset, size, what)
        _check_finite(values, what, allow_nonfinite)
    return _cast(values.reshape(shape), spec.dtype, what), offset


def _shape(shape: Any, spec: TensorSpec, what: str) -> tuple[int, ...]:
    if type(shape) is list and len(shape) == len(spec.shape):
        for want, got in zip(spec.shape, shape, strict=True):
            if type(got) is not int or got < 0 or want not in (-1, got):
                break
        else:
            return tuple(shape)
    sizes = type(shape) is list and all(type(d) is int and d >= 0 for d in shape)
    expected = list(spec.shape) if sizes else f"a list of sizes >= 0 fitting {list(spec.shape)} (where -1 stands for any size)"
    raise BadRequest(f"{what} shape", expected=expected, got=_brief(shape))


def _json_values(entry: dict[str, Any], dtype: np.dtype, count: int, what: str, allow_nonfinite: bool) -> np.ndarray:
    if "data" not in entry:
        raise BadRequest(f"{what}", expected="'data' or parameters.binary_data_size", got="neither")
    data = entry["data"]
    if dtype.itemsize >= 4 and dtype.kind == "f" and type(data) is list and len(data) == count <= SHORT_LIST and _finite_numbers(data):
        return np.array(data, dtype=dtype)  # what the general route below gives these values (finite: within float32's range)
    values = _numeric_array(data, f"{what} data")
    if values.size != count:
        raise BadRequest(f"{what} data", expected=f"{count} values for its shape", got=f"{values.size} values")
    if dtype.kind == "b" and values.dtype.kind != "b":
        raise BadRequest(f"{what} data", expected="true/false values for BOOL", got=f"{values.dtype} values")
    array = _json_numbers_as(values, dtype, f"{what} data")
    _check_finite(array, what, allow_nonfinite)  # after the cast: a number past a float type's range becomes Inf there
    return array


def _json_numbers_as(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    # JSON numbers are the text form of float tensors, so rounding them to a float type is not a loss; integers must stay exact.
    return values.astype(dtype) if dtype.kind == "f" else _cast(values, dtype, what)


def _binary_values(entry: dict[str, Any], dtype: np.dtype, count: int, body: bytes, offset: int, size: Any, what: str) -> tuple[np.ndarray, int]:
    if "data" in entry:
        raise BadRequest(what, expected="either 'data' or parameters.binary_data_size", got="both")
    expected = count * dtype.itemsize
    if type(size) is not int or size != expected:
        raise BadRequest(f"{what} binary_data_size", expected=f"{expected} bytes ({count} x {dtype.itemsize}-byte values for its shape)", got=_brief(size))
    if offset + size > len(body):
        raise BadRequest(f"{what} binary data", expected=f"{size} bytes after byte {offset}", got=f"{max(0, len(body) - offset)} bytes")
    return np.frombuffer(body, dtype=dtype, count=count, offset=offset), offset + size


def _finite_numbers(data: list[Any]) -> bool:
    """Whether a flat list holds only finite numbers within +-2**53, checked with Python's builtins.

    Within that bound a number converts to a float type straight from the list as it does through float64; NaN,
    which every comparison lets through, shows in the sum. For a short list this costs less than the numpy calls
    (array, astype, isfinite) of the general route."""
    try:
        return -EXACT_BOUND <= min(data) and max(data) <= EXACT_BOUND and math.isfinite(sum(data))
    except (TypeError, ValueError, RecursionError):  # a string, null, list or object among the values (lists compare deeply)
        return False


def _numeric_array(data: Any, what: str) -> np.ndarray:
    try:
        values = np.array(data)
    except (ValueError, TypeError):
        raise BadRequest(what, expected="a list (or nested lists of equal length) of numbers", got="ragged nested lists") from None
    if values.dtype.kind not in NUMERIC_KINDS:
        raise BadRequest(what, expected="numbers", got=_brief(next(iter(values.flat), None)) if values.size else "no values")
    return values


def _cast(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``values`` as ``dtype`` when no value changes on the way; else 400."""
    if values.dtype == dtype:
        return values
    cast = values.astype(dtype)
    same = cast.astype(values.dtype) == values
    if values.dtype.kind == "f" and dtype.kind == "f":
        same |= np.isnan(values)
    if not same.all():
        raise BadRequest(
            f"{what} values", expected=f"values exactly representable as {DATATYPE_OF[dtype]} (send that datatype)", got=f"{values.dtype} values that change"
        )
    return cast


def _check_finite(array: np.ndarray, what: str, allow_nonfinite: bool) -> None:
    if not allow_nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"{what} values", expected="finite numbers (set LUTNET_ALLOW_NONFINITE=true to allow NaN/Inf)", got="NaN or Inf")


def _batch_rows(arrays: Mapping[str, np.ndarray], max_batch_size: int | None) -> int:
    rows = {len(array) if array.ndim else 1 for array in arrays.values()}
    if len(rows) != 1:
        raise BadRequest("inputs", expected="the same batch size (first dimension) in every input", got=sorted(rows))
    (count,) = rows
    _check_batch(count, max_batch_size)
    return count


def _check_batch(rows: int, max_batch_size: int | None) -> None:
    if max_batch_size is not None and not 1 <= rows <= max_batch_size:
        raise BadRequest("batch size", expected=f"1 to {max_batch_size} rows", got=rows)


def _requested_outputs(requested: Any, outputs: Sequence[TensorSpec]) -> list[tuple[str, bool | None]] | None:
    if requested is None:
        return None
    if not isinstance(requested, list):
        raise BadRequest("'outputs'", expected="a list of objects with a name", got=_brief(requested))
    names = [spec.name for spec in outputs]
    chosen = []
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in names:
            raise BadRequest("requested output", expected=f"one of {names}", got=_brief(name if isinstance(entry, dict) else entry))
        parameters = _parameters(entry, f"output {name!r}")
        if "classification" in parameters:
            raise BadRequest(f"output {name!r} parameters", expected="no classification extension (use /v1 predict for labels)", got="classification")
        chosen.append((name, _flag(parameters, "binary_data", f"output {name!r}") if "binary_data" in parameters else None))
    return chosen


def _parameters(entry: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{what} parameters", expected="an object", got=_brief(parameters))
    return parameters


def _flag(parameters: dict[str, Any], key: str, what: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{what} parameter {key}", expected="true or false", got=_brief(value))
    return value


def _brief(value: Any) -> str:
    """A short description of a JSON value for an error message (deep nesting elided: a plain repr would recurse)."""
    text = BRIEF.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
