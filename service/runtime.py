"""One loaded model version: its onnxruntime session, model card, tensor specs, batching queue and execution.

Sessions are created by the registry inside the app's lifespan, so each worker process builds its
own after uvicorn forks. Each onnxruntime call runs inline on the event loop or in a compute thread
(setting ``execution``): ``auto``, the default, runs a call on the loop when it serves a request that
found the model idle and the warm-up predicts it takes less than ``inline_below_us`` (handing a call to
a thread and back costs more CPU than a small model computes). Longer calls, and the merged batches
of requests that queued behind others, run in a thread, so the loop keeps reading requests while there
is traffic to read, which keeps the latency tail short under load (benchmarks/RESULTS.md, serving). With batching off, the predicted time alone decides.
onnxruntime releases the GIL while it computes either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lutnet import metadata as card_keys
from lutnet.errors import LutnetError
from lutnet.ranges import InputRange
from lutnet.repository import MONITOR_FILE
from lutnet.service.batching import BatchResult, Computed, MicroBatcher
from lutnet.service.compute import ComputeThreads
from lutnet.service.config import BatchingPolicy
from lutnet.service.errors import BadRequest, ModelLoadError
from lutnet.service.metrics import ModelStats
from lutnet.service.monitor import InputMonitor, RangeCounts, SaturationWindow
from lutnet.service.protocol import TensorSpec
from lutnet.service.settings import Settings

ORT_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
JSON_CARD_KEYS = (
    card_keys.INPUT_SHAPE,
    card_keys.OUTPUT_SHAPE,
    card_keys.LABELS,
    card_keys.TRAINING_METRICS,
    card_keys.LUT_BINS,
    card_keys.MERGE_MAX_ERROR,
    card_keys.INPUT_RANGE,
    card_keys.LUT_TABLES,
    card_keys.SATURATION_BASELINE,
)
WARMUP_RUNS = 20
log = logging.getLogger("lutnet.serve")
PROBE_ROWS = 64  # the second batch size the warm-up times, to learn what each row adds


@dataclass(frozen=True, slots=True)
class ComputeCost:
    """What one onnxruntime call of this model costs: a one-row call, and each further row (medians of the warm-up)."""

    fixed_ns: float
    per_row_ns: float

    def rows_within(self, budget_ns: float, most: int) -> int:
        """The largest batch (at most ``most`` rows) predicted to compute within ``budget_ns``; 0 when not even one row is."""
        if self.fixed_ns > budget_ns:
            return 0
        if self.per_row_ns <= 0:
            return most
        return min(most, 1 + int((budget_ns - self.fixed_ns) / self.per_row_ns))


@dataclass(frozen=True)
class ModelCard:
    """The model card from the ONNX ``metadata_props`` (contract B in ``lutnet.metadata``); empty for foreign models."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ModelCard:
        values: dict[str, Any] = {}
        for key, text in metadata.items():
            try:
                values[key] = json.loads(text) if key in JSON_CARD_KEYS else text
            except json.JSONDecodeError:
                values[key] = text
        return cls(values)

    @property
    def task(self) -> str | None:
        return self.values.get(card_keys.TASK)

    @property
    def labels(self) -> list[str]:
        labels = self.values.get(card_keys.LABELS)
        return [str(label) for label in labels] if isinstance(labels, list) else []

    def to_dict(self) -> dict[str, Any]:
        """The card with the ``lutnet.`` prefix dropped from its keys."""
        return {key.removeprefix(card_keys.PREFIX): value for key, value in self.values.items()}


def session_options(settings: Settings) -> ort.SessionOptions:
    """onnxruntime options from the settings: threads, graph optimization, spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = OPTIMIZATION_LEVELS[settings.graph_optimization]
    spinning = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    options.log_severity_level = 3
    return options


def create_session(path: Path, settings: Settings) -> ort.InferenceSession:
    """An onnxruntime CPU session for ``path``; a file onnxruntime cannot load is a ``ModelLoadError``."""
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(settings), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise ModelLoadError(f"{path}", expected="an ONNX model onnxruntime can load", got=f"{type(exc).__name__}: {str(exc)[:300]}") from None


def tensor_specs(args: list[Any], what: str) -> tuple[TensorSpec, ...]:
    """v2 specs of a session's inputs or outputs; symbolic dimensions become -1."""
    specs = []
    for arg in args:
        if arg.type not in ORT_DATATYPES:
            raise ModelLoadError(f"{what} {arg.name!r} type", expected=f"a numeric tensor type ({', '.join(ORT_DATATYPES)})", got=arg.type)
        specs.append(TensorSpec(arg.name, ORT_DATATYPES[arg.type], tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)))
    return tuple(specs)


class LoadedModel:
    """A model version ready to serve: the session, what it expects and returns, and how its requests are run."""

    def __init__(self, name: str, version: int, path: Path, session: ort.InferenceSession, policy: BatchingPolicy, stats: ModelStats) -> None:
        self.name, self.version, self.path = name, version, path
        self.session = session
        self._run = session.run
        self.policy = policy
        self.stats = stats
        self.card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
        self.inputs = tensor_specs(session.get_inputs(), "input")
        self.outputs = tensor_specs(session.get_outputs(), "output")
        self.output_names = [spec.name for spec in self.outputs]
        # Batching needs a free first dimension on every tensor and fixed other input dimensions (so rows of
        # different requests concatenate); any other model runs requests as sent.
        self.batchable = all(spec.shape and spec.shape[0] == -1 for spec in self.inputs + self.outputs) and all(
            d >= 0 for spec in self.inputs for d in spec.shape[1:]
        )
        self.max_batch_size = policy.max_batch_size if self.batchable else None
        self.batcher: MicroBatcher | None = None
        self.cost = ComputeCost(0.0, 0.0)  # measured by warm_up
        self.inline_rows = 0  # calls of at most this many rows run on the event loop; larger ones in a compute thread
        self._threads: ComputeThreads | None = None
        self.monitor: InputMonitor | None = None  # set by attach_monitor when the card has a range or a monitor graph is sampled

    @property
    def primary_input(self) -> TensorSpec:
        """The input the /v1 API feeds: the card's input name, else the only input."""
        return self._primary(self.inputs, card_keys.INPUT_NAME, "input")

    @property
    def primary_output(self) -> TensorSpec:
        """The output the /v1 API reads: the card's output name, else the first output."""
        return self._primary(self.outputs, card_keys.OUTPUT_NAME, "output")

    def _primary(self, specs: tuple[TensorSpec, ...], key: str, what: str) -> TensorSpec:
        chosen = [spec for spec in specs if spec.name == self.card.values.get(key)]
        if not chosen and what == "input" and len(specs) != 1:
            raise BadRequest(f"model {self.name} inputs", expected="one input for the /v1 API (use /v2 for several)", got=[s.name for s in specs])
        return (chosen or list(specs))[0]

    def start(self, execution: str, threads: ComputeThreads | None, inline_below_us: float = 0.0) -> None:
        """Choose where calls run (see the module docstring) and start the batching queue (needs the running event loop)."""
        most = self.max_batch_size or 1
        if execution == "inline" or threads is None:
            self.inline_rows, self._threads = most, None
        elif execution == "thread":
            self.inline_rows, self._threads = 0, threads
        else:
            self.inline_rows, self._threads = self.cost.rows_within(inline_below_us * 1000, most), threads
        if self.policy.enabled and self.batchable:
            self.batcher = MicroBatcher(
                self.execute,
                label=f"{self.name} v{self.version}",
                max_batch_size=self.policy.max_batch_size,
                max_delay_us=self.policy.max_queue_delay_us,
                max_queue_size=self.policy.max_queue_size,
                timeout_s=self.policy.request_timeout_s,
                run_when_idle=execution != "inline",
            )
            self.batcher.start()

    def execution_summary(self) -> str:
        """Where this version's calls run, and the warm-up cost that decided it."""
        cost = f"warm-up {self.cost.fixed_ns / 1e3:.1f} us per call + {self.cost.per_row_ns / 1e3:.2f} us per row"
        most = self.max_batch_size or 1
        if self._threads is None or (self.batcher is None and self.inline_rows >= most):
            return f"every call on the event loop ({cost})"
        if self.inline_rows == 0:
            return f"every call in a compute thread ({cost})"
        if self.batcher is None:
            return f"calls of up to {self.inline_rows} rows on the event loop, larger ones in a compute thread ({cost})"
        if self.inline_rows >= most:
            return f"a request that finds the model idle on the event loop, merged batches in a compute thread ({cost})"
        return (
            f"a request of up to {self.inline_rows} rows that finds the model idle on the event loop; "
            f"larger ones and merged batches in a compute thread ({cost})"
        )

    async def close(self) -> None:
        """Finish queued requests and stop the queue; requests already computing keep the session alive until done."""
        if self.batcher is not None:
            await self.batcher.close()

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], int]:
        """One onnxruntime call: the outputs and the nanoseconds it took."""
        started = time.perf_counter_ns()
        outputs = self._run(self.output_names, feeds)
        return outputs, time.perf_counter_ns() - started

    def execute(self, feeds: dict[str, np.ndarray], alone: bool = True) -> Computed | Awaitable[Computed]:
        """``run`` here on the event loop when small enough and ``alone`` (no other request waits on this call; the
        result at once), else in a compute thread so the loop keeps serving meanwhile (an awaitable of the result);
        counted on the loop either way, in its next pass."""
        rows = len(next(iter(feeds.values()))) if self.batchable else 1
        if self._threads is None or (alone and rows <= self.inline_rows):
            outputs, elapsed = self.run(feeds)
            asyncio.get_running_loop().call_soon(self.stats.record_execution, rows, elapsed)  # after the response (DataPlane._serve)
            return outputs, elapsed
        return self._in_thread(feeds, rows)

    async def _in_thread(self, feeds: dict[str, np.ndarray], rows: int) -> Computed:
        assert self._threads is not None
        outputs, elapsed = await self._threads.call(self.run, feeds)
        asyncio.get_running_loop().call_soon(self.stats.record_execution, rows, elapsed)
        return outputs, elapsed

    async def infer(self, inputs: dict[str, np.ndarray], rows: int) -> BatchResult:
        """Outputs for one decoded request, through the batching queue when batching is on."""
        if self.batcher is not None:
            return await self.batcher.submit(inputs, rows)
        result = self.execute(inputs)
        outputs, compute_ns = result if type(result) is tuple else await result  # type: ignore[misc]
        return BatchResult(outputs, 0, compute_ns, rows)

    def warm_up(self) -> list[int]:
        """Run an example batch of one row, then of ``PROBE_ROWS`` rows when the model batches, a few times each, and
        set ``cost`` from their medians; a model that cannot run fails its load here. Returns the one-row compute times in ns."""
        probe = min(PROBE_ROWS, self.max_batch_size or 1)
        try:
            single = [self.run(self._example(1))[1] for _ in range(WARMUP_RUNS)]
            fixed = float(np.median(single))
            if probe > 1:
                feeds = self._example(probe)
                per_row = (float(np.median([self.run(feeds)[1] for _ in range(WARMUP_RUNS)])) - fixed) / (probe - 1)
            else:
                per_row = 0.0
        except Exception as exc:  # onnxruntime's errors have no common base
            raise ModelLoadError(f"model {self.name} v{self.version} warm-up run", expected="outputs", got=f"{type(exc).__name__}: {str(exc)[:300]}") from None
        self.cost = ComputeCost(fixed, max(per_row, 0.0))
        return single

    def _example(self, rows: int) -> dict[str, np.ndarray]:
        """Zeros of every input's shape, with ``rows`` rows when the model batches (free dimensions are 1 otherwise)."""
        shape = lambda spec: [rows if self.batchable and i == 0 else max(d, 1) for i, d in enumerate(spec.shape)]  # noqa: E731
        return {spec.name: np.zeros(shape(spec), dtype=spec.dtype) for spec in self.inputs}

    def attach_monitor(self, settings: Settings) -> None:
        """Watch this version's inputs (its card's training range) and table saturation (its monitor graph), as ``settings`` ask."""
        input_range = self._input_range() if settings.range_monitor else None
        if input_range is not None:
            bounds = (input_range.lo.astype(self.primary_input.dtype), input_range.hi.astype(self.primary_input.dtype))
            if self.stats.range is None or self.stats.range.features != len(input_range.lo):
                self.stats.range = RangeCounts(len(input_range.lo), input_range.percentiles, settings.stats_window, bounds)
            self.stats.range.flush()
            self.stats.range.bounds = bounds  # a reloaded version may carry another range
        saturation = self._saturation(settings) if settings.saturation_sample_rate > 0 else None
        if input_range is None and saturation is None:
            return
        label = f"model {self.name} v{self.version}"
        counts, watched = (self.stats.range, self.primary_input.name) if input_range is not None else (None, "")
        self.monitor = InputMonitor(watched, counts, saturation, label, self._warning_levels(settings.saturation_warning, saturation))

    def _warning_levels(self, margin: float, saturation: tuple[Any, SaturationWindow, int] | None) -> list[float]:
        """Per LUT layer, the saturation that draws a warning: its level on the export data (the card's baseline; 0 for a
        model without one) plus ``margin``."""
        layers = saturation[1].layers if saturation is not None else 0
        baseline = self.card.values.get(card_keys.SATURATION_BASELINE)
        if not (isinstance(baseline, list) and len(baseline) == layers and all(isinstance(b, (int, float)) for b in baseline)):
            baseline = [0.0] * layers
        return [min(1.0, float(b) + margin) for b in baseline]

    def _input_range(self) -> InputRange | None:
        """The card's training range of the primary input; None when absent or unreadable (logged: the model still serves)."""
        if card_keys.INPUT_RANGE not in self.card.values or len(self.inputs) != 1:
            return None
        try:
            return InputRange.from_dict(self.card.values[card_keys.INPUT_RANGE], math.prod(self.primary_input.row_shape))
        except LutnetError as exc:
            log.warning("model %s v%s: no input range monitoring: %s", self.name, self.version, exc)
            return None

    def _saturation(self, settings: Settings) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], SaturationWindow, int] | None:
        """The monitor graph's saturation output as a function of the inputs, its window and the sampling period."""
        path = self.path.parent / MONITOR_FILE
        if not path.is_file():
            return None
        try:
            session = create_session(path, settings)
            layers = session.get_outputs()[[o.name for o in session.get_outputs()].index(card_keys.SATURATION_OUTPUT)].shape[0]
        except (ModelLoadError, ValueError) as exc:
            log.warning("model %s v%s: no saturation monitoring, %s: %s", self.name, self.version, path.name, str(exc)[:300])
            return None
        if self.stats.saturation is None or self.stats.saturation.layers != layers:
            self.stats.saturation = SaturationWindow(layers, settings.saturation_window)
        run = lambda feeds: session.run([card_keys.SATURATION_OUTPUT], feeds)[0]  # noqa: E731
        return run, self.stats.saturation, max(1, round(1 / settings.saturation_sample_rate))

    def describe(self) -> dict[str, Any]:
        """v2 model metadata of this version."""
        return {
            "name": self.name,
            "versions": [str(self.version)],
            "platform": "onnxruntime_onnx",
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }

    def config(self) -> dict[str, Any]:
        """The model configuration in Triton's JSON form, plus the model card."""
        dims = lambda spec: list(spec.shape[1:] if self.batchable else spec.shape)  # noqa: E731
        config: dict[str, Any] = {
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": self.max_batch_size or 0,
            "input": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": dims(s)} for s in self.inputs],
            "output": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": dims(s)} for s in self.outputs],
            "lutnet_model_card": self.card.to_dict(),
        }
        if self.batcher is not None:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": self.policy.max_queue_delay_us,
                "default_queue_policy": {"max_queue_size": self.policy.max_queue_size},
            }
        return config
