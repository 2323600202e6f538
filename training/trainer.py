"""The training loop: data, model, calibration, AdamW + cosine, early stopping, resumable state, DDP, checkpoint.

A run writes into its directory, per epoch: a line of ``metrics.jsonl`` and the resumable training state
(``train_state.json`` + ``train_state.safetensors``: weights, best weights, optimizer and scheduler
state; nothing pickled). Shuffling is a pure function of ``(seed, epoch)``, so no RNG state needs saving
and a resumed run ends bit-identical to an uninterrupted one. On success the best-on-validation weights
are written as a contract-A checkpoint (``config.json`` + ``model.safetensors``), with the test split beside it
(``test_split.safetensors``: raw inputs ``X`` and targets ``y``, which ``lutnet export`` verifies on), and the state is removed.

The kept weights are those of the epoch with the best validation score: the task's metric (accuracy, or
RMSE for regression) with the loss breaking ties, or the loss alone (``select="loss"``). Early stopping
counts epochs since that epoch; at least one epoch always runs. Each epoch also records how far every LUT
layer's tables moved from their init function (:func:`lutnet.lut.table_movement`).

Under ``torchrun`` every process trains on its share of each global batch (DDP; gloo on CPU, nccl on
GPU); the loss is scaled so the averaged gradient equals the single-process one. Only rank 0 writes.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import lutnet
from lutnet import ranges, tensorfile
from lutnet.atomic import write_text_atomic
from lutnet.checkpoint import CALIBRATION_FILE, CONFIG_FILE, TENSOR_FILE, TEST_SPLIT_FILE, write_checkpoint
from lutnet.errors import CheckpointError, LutnetError
from lutnet.lut import table_movement
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.training.data import Dataset, input_statistics, load_dataset
from lutnet.training.models import LutnetModel, build_model, checkpoint_from_model
from lutnet.training.convert import DEFAULT_PERCENTILES, RECALIBRATE_AFTER, TABLE_LR, TABLE_WEIGHT_DECAY, calibrate, optimizer_groups
from lutnet.training.lut import add_smoothness_gradients_

STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state-{epoch}.safetensors"  # one file per saved epoch; train_state.json names the current one
METRICS_FILE = "metrics.jsonl"
EVAL_BATCH = 2048
CALIBRATION_ROWS = 2048  # enough rows to see each channel's range, at most a few MB for image inputs
# Settings that only say how or where to run; everything else defines the run and must match on --resume.
RUNTIME_FIELDS = ("device", "threads", "out", "resume", "quiet", "stop_after")
SELECTIONS = ("metric", "loss")
TABLE_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Everything ``lutnet train`` needs; the defaults train a good digits LUT-MLP in seconds on 2 cores."""

    out: str = ""
    dataset: str = "digits"
    target: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = ModelSpec.hidden
    activation: str = ModelSpec.activation
    bins: int = LUTSpec.bins  # the model's defaults live in lutnet.spec, once
    mode: str = LUTSpec.mode
    extrapolate: str = LUTSpec.extrapolate
    init: str = LUTSpec.init
    shared: bool = LUTSpec.shared
    range: tuple[float, float] = LUTSpec.range
    kernel_size: int = ModelSpec.kernel_size
    pool: str = ModelSpec.pool
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    table_lr: float = TABLE_LR  # the tables' recipe lives in lutnet.training.convert, with the helpers for any module
    table_weight_decay: float = TABLE_WEIGHT_DECAY
    table_schedule: str = "cosine"  # "cosine": the tables' rate decays with the weights'; "constant": it stays
    smoothness: float = 1e-4
    calibration_size: int = 512
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    recalibrate_after: int = RECALIBRATE_AFTER
    patience: int = 10
    select: str = "metric"  # "metric": accuracy or RMSE on the validation split, loss breaking ties; "loss": loss alone
    # Each input feature's std is at least this fraction of its train-split range; 0.5 binds on every feature (std = range / 2:
    # min-max scaling to a span of 2, centred on the mean), 0 is plain standardization. Chosen on validation (benchmarks.tuning).
    std_floor: float = 0.5
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    resume: bool = False
    quiet: bool = False
    stop_after: int | None = None

    def identity(self) -> dict[str, Any]:
        """The fields that define the run (JSON-ready); a resumed run must have the same."""
        return {k: v for k, v in _jsonable(dataclasses.asdict(self)).items() if k not in RUNTIME_FIELDS}


@dataclass
class TrainResult:
    """What a run produced: where, how far it got and its final metrics (empty until it finishes)."""

    out: Path
    epochs_run: int
    finished: bool
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1

    @property
    def writer(self) -> bool:
        return self.rank == 0


def train(config: TrainConfig) -> TrainResult:
    """Run one training job as configured (see the module docstring for what it writes)."""
    if not config.out:
        raise LutnetError("--out", expected="a directory for the checkpoint", got="nothing")
    out = Path(config.out)
    saved = read_resume_state(out) if config.resume else None
    if saved is None:
        refuse_existing_run(out)
    else:
        check_same_run(out, saved["config"], config.identity())
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = start_distributed(device)
    try:
        return _train(config, out, saved, device, dist)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()


def _train(config: TrainConfig, out: Path, saved: dict[str, Any] | None, device: torch.device, dist: Distributed) -> TrainResult:
    data = load_dataset(config.dataset, target=config.target, seed=config.seed)
    data = data.as_images() if config.model == "convnet" else data
    spec = model_spec(config, data)
    if config.batch_size < dist.world:
        raise LutnetError("--batch-size", expected=f"at least the number of processes ({dist.world})", got=config.batch_size)
    torch.manual_seed(config.seed)
    model = prepare_model(spec, data, config).to(device)
    X = {s: torch.as_tensor(getattr(data, f"X_{s}"), dtype=torch.float32, device=device) for s in ("train", "val", "test")}
    y_dtype = torch.int64 if data.task == "classification" else torch.float32
    y = {s: torch.as_tensor(getattr(data, f"y_{s}"), dtype=y_dtype, device=device) for s in ("train", "val", "test")}
    calibration = X["train"][: config.calibration_size]
    calibrate_model(model, calibration, config.percentiles)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = -(-len(X["train"]) // config.batch_size)
    scheduler = make_scheduler(optimizer, config.table_schedule, config.epochs * steps_per_epoch)
    best = {"epoch": 0, "score": [float("inf")], "state": copy.deepcopy(model.state_dict())}  # epoch 0: none yet
    history: list[dict[str, Any]] = []
    if saved is not None:
        history, best = restore_state(out, saved, model, optimizer, scheduler)
        if dist.writer:
            write_text_atomic(out / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in history))
    wrapped = wrap_distributed(model, device, dist)
    start, ran = len(history), 0
    bar = tqdm(range(start, config.epochs), initial=start, total=config.epochs, desc=f"train {data.name}", unit="epoch",
               disable=config.quiet or not dist.writer, file=sys.stderr)
    for epoch in bar:
        # checked first, so a resumed run that had already stopped early does not train on
        if epoch - best["epoch"] >= config.patience or (config.stop_after is not None and ran >= config.stop_after):
            break
        seconds = time.perf_counter()
        batches = epoch_batches(len(X["train"]), config.batch_size, config.seed, epoch, dist)
        train_loss = train_epoch(wrapped, model, optimizer, scheduler, X["train"], y["train"], batches, config.smoothness, dist.world)
        if epoch + 1 == config.recalibrate_after:
            recalibrate(model, optimizer, calibration, config.percentiles)
        val = evaluate(model, X["val"], y["val"])
        history.append({"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()},
                        "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - seconds, 4)})
        history[-1]["table_movement"] = movements(model)
        score = selection_score(val, data.task, config.select)
        if score < best["score"]:
            best = {"epoch": epoch + 1, "score": score, "state": copy.deepcopy(model.state_dict())}
        bar.set_postfix(loss=f"{train_loss:.4f}", **{f"val_{k}": f"{v:.4f}" for k, v in val.items() if k != "loss"})
        if dist.writer:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(history[-1]) + "\n")
            save_state(out, config, model, optimizer, scheduler, history, best)
        ran += 1
    bar.close()
    finished = len(history) >= config.epochs or len(history) - best["epoch"] >= config.patience
    if not finished:
        return TrainResult(out, len(history), False, history=history)
    model.load_state_dict(best["state"])
    metrics = {"val": evaluate(model, X["val"], y["val"]), "test": evaluate(model, X["test"], y["test"])}
    if dist.writer:
        out.mkdir(parents=True, exist_ok=True)
        info = checkpoint_info(config, data, metrics, history, best["epoch"], movements(model))
        write_test_split(out, data)
        write_calibration_split(out, data, config.seed)
        write_checkpoint(checkpoint_from_model(model.cpu(), labels=data.labels, info=info), out)
        remove_state(out)
        if not config.quiet:
            print(summary_line(data, spec, metrics, len(history), best["epoch"], out))
    return TrainResult(out, len(history), True, metrics, history)


def selection_score(val: dict[str, float], task: str, select: str) -> list[float]:
    """Lower is better: the task's metric on the validation split, then the loss; or the loss alone."""
    if select not in SELECTIONS:
        raise LutnetError("--select", expected=f"one of {list(SELECTIONS)}", got=repr(select))
    if select == "loss":
        return [val["loss"]]
    return [-val["accuracy"] if task == "classification" else val["rmse"], val["loss"]]


def movements(model: LutnetModel) -> list[float]:
    """Per LUT layer, how far its tables moved from their init function (relative L2)."""
    return [round(table_movement(*(t.detach().cpu().double().numpy() for t in (lut.table, lut.lo, lut.hi)), lut.init), 6)
            for lut in model.luts()]


def model_spec(config: TrainConfig, data: Dataset) -> ModelSpec:
    """The validated model spec for ``config`` on ``data``."""
    lut = LUTSpec(bins=config.bins, mode=config.mode, extrapolate=config.extrapolate, init=config.init, shared=config.shared,
                  range=tuple(config.range))
    outputs = len(data.labels) if data.task == "classification" else 1
    spec = ModelSpec(family=config.model, input_shape=tuple(data.input_shape), num_outputs=outputs, hidden=tuple(config.hidden),
                     activation=config.activation, lut=lut, kernel_size=config.kernel_size, pool=config.pool)
    spec.validate()
    return spec


def prepare_model(spec: ModelSpec, data: Dataset, config: TrainConfig) -> LutnetModel:
    """A fresh model with input (and regression target) standardization from the train split (std floored by ``config.std_floor``)."""
    model = build_model(spec, data.task)
    mean, std = input_statistics(data.X_train, config.std_floor)
    model.input_mean.copy_(torch.from_numpy(mean))
    model.input_std.copy_(torch.from_numpy(std))
    if data.task == "regression":
        model.target_mean.fill_(float(data.y_train.mean()))
        model.target_std.fill_(float(data.y_train.std()) or 1.0)
    return model


@torch.no_grad()
def calibrate_model(model: LutnetModel, batch: torch.Tensor, percentiles: tuple[float, float]) -> None:
    """Fit every LUT's range to its pre-activations on ``batch``, first layer first, in one forward pass."""
    calibrate(model, batch, percentiles)


def recalibrate(model: LutnetModel, optimizer: torch.optim.Optimizer, batch: torch.Tensor, percentiles: tuple[float, float]) -> None:
    """Calibrate again after warm-up; the tables' Adam moments refer to the old knots, so they restart."""
    calibrate_model(model, batch, percentiles)
    for lut in model.luts():
        optimizer.state.pop(lut.table, None)


def make_optimizer(model: LutnetModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the tables in their own group (own learning rate and weight decay).

    ``fused``: one kernel per group instead of several ops per parameter tensor, whose dispatch overhead
    dominates a small model's optimizer step on CPU.
    """
    return torch.optim.AdamW(optimizer_groups(model, config.lr, config.weight_decay, config.table_lr, config.table_weight_decay), fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, table_schedule: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay to zero over ``steps`` for every parameter group; with ``constant`` the tables' group keeps its rate."""
    if table_schedule not in TABLE_SCHEDULES:
        raise LutnetError("--table-schedule", expected=f"one of {list(TABLE_SCHEDULES)}", got=repr(table_schedule))
    if table_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    cosine = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))  # noqa: E731
    constant = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [cosine, constant][: len(optimizer.param_groups)])


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int, dist: Distributed) -> list[tuple[np.ndarray, int]]:
    """This process's row indices of each global batch, with the global batch size; the shuffle depends only on (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    batches = (order[i : i + batch_size] for i in range(0, size, batch_size))
    return [(np.array_split(batch, dist.world)[dist.rank], len(batch)) for batch in batches]


def train_epoch(wrapped: torch.nn.Module, model: LutnetModel, optimizer: torch.optim.Optimizer, scheduler: Any,
                X: torch.Tensor, y: torch.Tensor, batches: list[tuple[np.ndarray, int]], smoothness: float, world: int) -> float:
    """One pass over ``batches``; returns the mean training loss of this process's rows.

    The TV(2) penalty's gradient (weight ``smoothness``) is added to the tables' gradients after the
    backward pass, identically on every process, so it is not averaged away by DDP.
    """
    model.train()
    luts = model.luts() if smoothness else []
    total, count = 0.0, 0
    for rows, global_size in batches:
        index = torch.from_numpy(rows).to(X.device)
        loss, loss_sum = step_loss(wrapped, model, X[index], y[index], global_size, world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if luts:
            add_smoothness_gradients_(luts, smoothness)
        optimizer.step()
        scheduler.step()
        total, count = total + float(loss_sum.detach()), count + len(rows)
    if not np.isfinite(total):
        raise LutnetError("training loss", expected="a finite number (try a lower --lr or --table-lr)", got=total)
    return total / max(count, 1)


def step_loss(wrapped: torch.nn.Module, model: LutnetModel, X: torch.Tensor, y: torch.Tensor, global_size: int,
              world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to differentiate on this process's rows of a global batch, and their summed data loss.

    The summed loss is divided by the global batch size and multiplied by ``world``, so the gradient
    DDP averages over processes equals the gradient of the global batch's mean loss.
    """
    loss_sum = batch_loss_sum(wrapped(X), y, model)
    return loss_sum * (world / global_size), loss_sum


def batch_loss_sum(outputs: torch.Tensor, targets: torch.Tensor, model: LutnetModel) -> torch.Tensor:
    """Summed loss: cross-entropy for classes, squared error in standardized target units for regression."""
    if model.task == "classification":
        return F.cross_entropy(outputs, targets, reduction="sum")
    return (((outputs[:, 0] - targets) / model.target_std) ** 2).sum()


@torch.no_grad()
def evaluate(model: LutnetModel, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Loss and task metrics (accuracy; or rmse, mae, r2 in target units) on ``X``, ``y``."""
    model.eval()
    outputs = torch.cat([model(X[i : i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)])
    loss = float(batch_loss_sum(outputs, y, model)) / len(y)
    if model.task == "classification":
        return {"loss": loss, "accuracy": float((outputs.argmax(1) == y).double().mean())}
    error = (outputs[:, 0] - y).double()
    variance = float(((y.double() - y.double().mean()) ** 2).mean())
    mse = float((error**2).mean())
    return {"loss": loss, "rmse": mse**0.5, "mae": float(error.abs().mean()), "r2": 1.0 - mse / variance if variance > 0 else 0.0}


# --- devices and processes ---------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise LutnetError("--device", expected="auto, cpu or cuda", got=repr(name))
    if name == "cuda" and not torch.cuda.is_available():
        raise LutnetError("--device cuda", expected="a CUDA-capable torch and GPU", got="torch.cuda.is_available() is False")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def start_distributed(device: torch.device) -> Distributed:
    """Join the ``torchrun`` process group when launched by it (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=torch.distributed.get_rank(), world=world)


def wrap_distributed(model: LutnetModel, device: torch.device, dist: Distributed) -> torch.nn.Module:
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# --- run directory: refuse, resume, save ---------------------------------------------------------------

def refuse_existing_run(out: Path) -> None:
    """A fresh run never overwrites another run's checkpoint or state."""
    found = [name for name in (CONFIG_FILE, TENSOR_FILE, STATE_JSON) if (out / name).exists()]
    if found:
        raise LutnetError(f"--out {out}", expected="a new or empty directory (use --resume DIR to continue a run there)",
                          got=f"an existing run ({', '.join(found)})")


def read_resume_state(out: Path) -> dict[str, Any]:
    """The saved state of an unfinished run in ``out``; clear errors when there is none."""
    path = out / STATE_JSON
    if not path.exists():
        got = "a finished checkpoint (nothing left to resume)" if (out / CONFIG_FILE).exists() else f"no {STATE_JSON}"
        raise CheckpointError(f"--resume {out}", expected="the training state of an interrupted 'lutnet train' run", got=got)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"--resume {path}", expected="a training state written by 'lutnet train'", got=str(exc)) from None
    complete = isinstance(saved, dict) and {"config", "history", "scheduler", "tensors", "best_score"} <= set(saved)
    if not complete or not (out / str(saved["tensors"])).is_file():
        raise CheckpointError(f"--resume {path}", expected="a training state written by 'lutnet train' with its tensor file", got="an incomplete one")
    return saved


def check_same_run(out: Path, saved: dict[str, Any], requested: dict[str, Any]) -> None:
    """A resumed run must be the same run: same data, model and training settings."""
    differences = {k: (saved.get(k), requested[k]) for k in requested if saved.get(k) != requested[k]}
    if differences:
        expected = ", ".join(f"{k}={a!r}" for k, (a, _) in differences.items())
        got = ", ".join(f"{k}={b!r}" for k, (_, b) in differences.items())
        raise CheckpointError(f"--resume {out} holds a run of another model or setup", expected=expected, got=got)


def save_state(out: Path, config: TrainConfig, model: LutnetModel, optimizer: torch.optim.Optimizer, scheduler: Any,
               history: list[dict[str, Any]], best: dict[str, Any]) -> None:
    """Write the resumable state: tensors to safetensors, everything else to JSON (tensors first)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best["state"].items()})
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        tensors.update({f"optimizer.{index}.{slot}": value for slot, value in slots.items()})
    # The tensors go to a new file and the JSON, written last, points at it: a kill at any moment leaves
    # a JSON that names a complete tensor file of the same epoch.
    tensor_file = STATE_TENSORS.format(epoch=len(history))
    tensorfile.save_file({k: v.detach().cpu().numpy() for k, v in tensors.items()}, out / tensor_file)
    state = {"config": config.identity(), "tensors": tensor_file, "epoch": len(history), "history": history, "best_epoch": best["epoch"],
             "best_score": best["score"], "optimizer_groups": optim["param_groups"], "scheduler": scheduler.state_dict()}
    write_text_atomic(out / STATE_JSON, json.dumps(_jsonable(state)) + "\n")
    remove_state(out, keep=tensor_file)


def remove_state(out: Path, keep: str | None = None) -> None:
    """Delete the resumable state (all of it, or all tensor files but ``keep``)."""
    if keep is None:
        (out / STATE_JSON).unlink(missing_ok=True)
    for path in out.glob(STATE_TENSORS.format(epoch="*")):
        if path.name != keep:
            path.unlink(missing_ok=True)


def restore_state(out: Path, saved: dict[str, Any], model: LutnetModel, optimizer: torch.optim.Optimizer,
                  scheduler: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load what :func:`save_state` wrote into ``model``, ``optimizer`` and ``scheduler``; returns history and best."""
    tensors = {k: torch.from_numpy(v) for k, v in tensorfile.load_file(out / saved["tensors"]).items()}
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    model.load_state_dict(part("model."))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in part("optimizer.").items():
        index, slot = name.split(".", 1)
        slots.setdefault(int(index), {})[slot] = value
    groups = [{**g, "betas": tuple(g["betas"])} for g in saved["optimizer_groups"]]
    optimizer.load_state_dict({"state": slots, "param_groups": groups})
    scheduler.load_state_dict(saved["scheduler"])
    best = {"epoch": saved["best_epoch"], "score": saved["best_score"], "state": part("best.")}
    return saved["history"], best


def checkpoint_info(config: TrainConfig, data: Dataset, metrics: dict[str, Any], history: list[dict[str, Any]], best_epoch: int,
                    table_movement: list[float]) -> dict[str, Any]:
    """The free-form part of config.json: data set, metrics, training arguments (with how the kept epoch was chosen
    and how far its tables moved from their init), and versions."""
    metric = "loss" if config.select == "loss" else ("accuracy" if data.task == "classification" else "rmse")
    return _jsonable({
        "dataset": {"name": data.name, "source": data.source, "sizes": data.sizes(), "split_seed": config.seed,
                    "target": config.target, "feature_names": data.feature_names},
        "metrics": metrics,
        ranges.CHECKPOINT_KEY: ranges.InputRange.of_samples(data.X_train).to_dict(),  # the model card's input range (lutnet.ranges)
        "training": {**config.identity(), "epochs_run": len(history), "best_epoch": best_epoch,
                     "selected_by": {"split": "val", "metric": metric, "tie_break": None if metric == "loss" else "loss"},
                     "table_movement": table_movement, "seconds": round(sum(h["seconds"] for h in history), 3)},
        "versions": {"lutnet": lutnet.__version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    })


def write_test_split(out: Path, data: Dataset) -> None:
    """The raw test inputs ``X`` (model input shape) and targets ``y`` beside the checkpoint, so ``lutnet export`` verifies on them."""
    y_dtype = np.int64 if data.task == "classification" else np.float32
    tensorfile.save_file({"X": np.asarray(data.X_test, dtype=np.float32), "y": np.asarray(data.y_test, dtype=y_dtype)}, out / TEST_SPLIT_FILE)


def write_calibration_split(out: Path, data: Dataset, seed: int) -> None:
    """A seeded sample of at most ``CALIBRATION_ROWS`` raw training inputs ``X``, on which ``lutnet export --quantize`` calibrates."""
    rows = np.random.default_rng(seed).permutation(len(data.X_train))[:CALIBRATION_ROWS]
    tensorfile.save_file({"X": np.asarray(data.X_train, dtype=np.float32)[np.sort(rows)]}, out / CALIBRATION_FILE)


def summary_line(data: Dataset, spec: ModelSpec, metrics: dict[str, dict[str, float]], epochs: int, best_epoch: int, out: Path) -> str:
    test, val = metrics["test"], metrics["val"]
    key = "accuracy" if data.task == "classification" else "rmse"
    return (f"{data.name} {spec.family}/{spec.activation}: test {key} {test[key]:.4f} (val {val[key]:.4f}), "
            f"{epochs} epochs (best {best_epoch}) -> {out}")


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python numbers, recursively (so JSON round trips compare equal)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
