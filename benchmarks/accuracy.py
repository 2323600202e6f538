"""Suite 1: test accuracy at equal parameter count (+-5%) of lutnet's LUT/ReLU/GELU MLPs and the learning peers, 5 seeds.

Run ``python -m benchmarks.accuracy [--quick]``; writes ``benchmarks/results/accuracy.json``. Every model of one
(data set, seed) sees the same 70/15/15 split (``lutnet.training.data.load_dataset(name, seed=seed)``, handed to the peers
as an .npz). lutnet models are trained with the ``lutnet train`` defaults except the hidden width (two equal layers),
exported and verified as ``lutnet export`` does, and scored with onnxruntime on the test split; each LUT lookup mode is
trained and exported in that mode. Peers keep their runners' one hidden layer, Adam and a training-time cap, and
keep their best-on-validation epoch, as lutnet's trainer does. Parameter counts are trainable
parameters: weights, biases and the LUT tables (a table of K bins is K+1 parameters per channel); the calibrated
ranges ``lo``/``hi`` are fitted, not learned, and are not counted. Widths are chosen per model so the count lands
within +-5% of the data set's budget. About 30 minutes on 2 cores (``--quick``: 2 data sets, 1 seed, ~3 minutes).
``--convnet`` runs lutnet's convnets instead (two 3x3 conv blocks of equal channels, per-channel activations) on the
image sets at their own budgets, written to ``accuracy_convnet.json`` under ``<set>_convnet``; the peers are MLPs and
do not run there.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.peers.datasets import split_arrays, write_npz
from benchmarks.peers.peer_training import layer_widths, score, trainable_parameters, width_for_budget
from benchmarks.peers.setup import PEERS, ensure
from benchmarks.peers.smoke import WORK as PEER_WORK
from benchmarks.peers.smoke import run_learning_peer
from lutnet.export.exporter import export_model
from lutnet.errors import LutnetError
from lutnet.training import formulas
from lutnet.training.data import Dataset, load_dataset
from lutnet.training.models import build_model
from lutnet.training.trainer import TrainConfig, model_spec, train

WORK = Path(__file__).resolve().parent / ".work" / "accuracy"
BUDGETS = {"digits": 20_000, "breast_cancer": 10_000, "wine": 5_000, "diabetes": 5_000, "mnist5k": 100_000,
           **{task: 3_000 for task in formulas.TASKS}}  # function fitting: small networks, where learned activations should tell
# The convnet family (two conv blocks of equal channels), where per-channel activations are the claim: results under "<set>_convnet".
CONVNET_BUDGETS = {"mnist5k": 20_000, "digits": 5_000}
SEEDS = (0, 1, 2, 3, 4)
DEPTH = 2  # lutnet's default MLP depth (hidden=(256, 256)); only the width changes to meet the budget
NEAREST_MAX_ERROR = 1e-3  # the deployed nearest graph: fewest pockets within this merge error (relative to the output scale)
LUTNET_MODELS: dict[str, dict[str, Any]] = {  # model name -> TrainConfig overrides (+ "export": lutnet export options)
    "lut_linear": {"activation": "lut", "mode": "linear"},
    "lut_nearest": {"activation": "lut", "mode": "nearest"},
    # the documented path to pockets: train linear, export nearest with --max-error
    "lut_linear_to_nearest": {"activation": "lut", "mode": "linear", "export": {"mode": "nearest", "max_error": NEAREST_MAX_ERROR}},
    "relu": {"activation": "relu"},
    "gelu": {"activation": "gelu"},
}
# The models that differ in training (an "export" variant trains as its base model does).
TRAINED_MODELS = {name: overrides for name, overrides in LUTNET_MODELS.items() if "export" not in overrides}
LEARNING_PEERS = ("pykan", "deepsplines", "inkan")
PEER_SECONDS = {"mnist5k": 30.0}  # training-time cap per peer run (the peers' own early stop keeps the best epoch)
DEFAULT_PEER_SECONDS = 12.0
PEER_EPOCHS = 60


def metric_name(task: str, dataset: str = "") -> str:
    """The headline metric: accuracy (higher is better), RMSE (lower is better), or for the function-fitting tasks
    RMSE over the test targets' standard deviation (lower is better, comparable across tasks)."""
    if task == "classification":
        return "accuracy"
    return "relative_rmse" if dataset in formulas.TASKS else "rmse"


def model_data(data: Dataset, overrides: dict[str, Any]) -> Dataset:
    """The data as the model family sees it: images ``[N, C, H, W]`` for the convnet, rows otherwise."""
    return data.as_images() if overrides.get("model") == "convnet" else data


def lutnet_builder(data: Dataset, overrides: dict[str, Any]) -> Callable[[list[int], int], Any]:
    """A (layer widths [features, hidden..., outputs], seed) -> model builder of lutnet's MLP or convnet (widths are
    then channels), for the shared width search."""
    def build(widths: list[int], seed: int) -> Any:
        config = dataclasses.replace(TrainConfig(), **overrides, hidden=tuple(widths[1:-1]))
        return build_model(model_spec(config, model_data(data, overrides)), data.task)

    return build


def lutnet_width(data: Dataset, overrides: dict[str, Any], budget: int, depth: int = DEPTH) -> tuple[int, int]:
    """The hidden width (all ``depth`` layers alike) whose trainable parameter count is nearest ``budget``, and that count."""
    build = lutnet_builder(data, overrides)
    outputs = len(data.labels) if data.task == "classification" else 1
    width = width_for_budget(build, data.input_shape[0], outputs, budget, depth)
    return width, parameters_at(data, overrides, width, depth)


def parameters_at(data: Dataset, overrides: dict[str, Any], width: int, depth: int = DEPTH) -> int:
    """Trainable parameters of the lutnet model with ``depth`` hidden layers of ``width``."""
    outputs = len(data.labels) if data.task == "classification" else 1
    return trainable_parameters(lutnet_builder(data, overrides)(layer_widths(data.input_shape[0], width, depth, outputs), 0))


def lutnet_config(data: Dataset, seed: int, budget: int, overrides: dict[str, Any], out: Path) -> tuple[TrainConfig, int]:
    """The suite's training run of one lutnet model (``lutnet train`` defaults at the budget's width, one thread), and its parameter count."""
    width, params = lutnet_width(data, overrides, budget)
    return width_config(data, seed, width, overrides, out), params


def width_config(data: Dataset, seed: int, width: int, overrides: dict[str, Any], out: Path) -> TrainConfig:
    """The suite's training run of one lutnet model with ``DEPTH`` hidden layers of ``width`` (``lutnet train`` defaults, one thread)."""
    return dataclasses.replace(TrainConfig(), **overrides, out=str(out), dataset=data.name, hidden=(width,) * DEPTH, seed=seed, quiet=True, threads=1)


def onnx_output(model: bytes, X: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})[0]


def run_lutnet(data: Dataset, seed: int, budget: int, overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train one lutnet model at the budget, export it as ``lutnet export`` does (verified) and score the ONNX model."""
    width, _ = lutnet_width(data, {k: v for k, v in overrides.items() if k != "export"}, budget)
    return train_and_export(data, seed, overrides, width, out)[0]


def train_and_export(data: Dataset, seed: int, overrides: dict[str, Any], width: int, out: Path) -> tuple[dict[str, Any], bytes]:
    """Train one lutnet model of hidden ``width`` (``DEPTH`` layers), export it as ``lutnet export`` does (verified) and
    score the ONNX model; its results row and the exported model."""
    overrides = dict(overrides)
    export_options = overrides.pop("export", {})
    config = width_config(data, seed, width, overrides, out)
    result = train(config)
    shaped = model_data(data, overrides)
    exported = export_model(out, verify_data=shaped.X_val, **export_options)
    row = {"hidden": list(config.hidden), "params": parameters_at(data, overrides, width), "epochs": result.epochs_run,
           "torch_test": result.metrics["test"],
           "test": score(onnx_output(exported.model, shaped.X_test), data.y_test, data.task),
           "val": score(onnx_output(exported.model, shaped.X_val), data.y_val, data.task), "nodes": exported.nodes,
           "exported_bins": exported.exported.spec.lut.bins if exported.exported.spec.activation == "lut" else None}
    return row, exported.model


def run_peer(peer: str, dataset: str, seeds: Sequence[int], budget: int, split_paths: Sequence[Path], quick: bool) -> dict[str, Any]:
    """One peer on every seed's split, in one process in its own environment (benchmarks.peers runner; the libraries
    take seconds to import). Scored in torch on the same splits; no ONNX export, which no row uses."""
    seconds = 5.0 if quick else PEER_SECONDS.get(dataset, DEFAULT_PEER_SECONDS)
    return run_learning_peer(PEERS[peer], split_paths, params=budget, seeds=seeds, max_epochs=PEER_EPOCHS, max_seconds=seconds, export=False)


def peer_row(result: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The row of one seed's run of a peer."""
    return {"model": result["peer"], "hidden": result["layers"][1:-1], "params": result["params"], "epochs": run["epochs"],
            "best_epoch": run["best_epoch"], "test": run["test"], "val": run["val"], "seconds_per_epoch": run["seconds_per_epoch"]}


def dataset_key(name: str, family: str) -> str:
    """The results' name of a data set run with a model family: the set's own name for MLPs, ``<set>_convnet`` for convnets."""
    return name if family == "mlp" else f"{name}_{family}"


def budget_of(name: str, family: str) -> int:
    return BUDGETS[name] if family == "mlp" else CONVNET_BUDGETS[name]


def family_of(models: dict[str, dict[str, Any] | None]) -> str:
    """The model family of a run's lutnet models (their TrainConfig ``model``; peers are MLPs)."""
    return next((overrides.get("model", "mlp") for overrides in models.values() if overrides is not None), "mlp")


def run_dataset(name: str, seeds: Sequence[int], models: dict[str, dict[str, Any] | None], quick: bool, bar: tqdm) -> list[dict[str, Any]]:
    """Every model on every seed of one data set (TrainConfig overrides for lutnet's, None for a peer); one row per (model, seed)."""
    rows, split_paths = [], []
    family = family_of(models)
    key, budget = dataset_key(name, family), budget_of(name, family)
    for seed in seeds:
        data = load_dataset(name, seed=seed)
        split_paths.append(WORK / f"{name}_seed{seed}.npz")
        write_npz(split_arrays(data), split_paths[-1])
        with tempfile.TemporaryDirectory(dir=WORK) as runs:
            for model, overrides in models.items():
                if overrides is not None:
                    bar.set_postfix_str(f"{name} seed {seed} {model}")
                    row = run_lutnet(data, seed, budget, overrides, Path(runs) / model)
                    rows.append({"dataset": key, "seed": seed, "model": model, **row})
                    bar.update()
    for peer in [model for model, overrides in models.items() if overrides is None]:
        bar.set_postfix_str(f"{name} seeds {list(seeds)} {peer}")
        result = run_peer(peer, name, seeds, budget, split_paths, quick)
        rows += [{"dataset": key, "seed": run["seed"], **peer_row(result, run)} for run in result["runs"]]
        bar.update(len(seeds))
    return rows


def summarize_rows(rows: list[dict[str, Any]], tasks: dict[str, str]) -> list[dict[str, Any]]:
    """Mean and std over seeds of the test metric per (data set, model), and the gap to the ReLU MLP."""
    summary = []
    for dataset, task in tasks.items():
        key = metric_name(task, dataset)
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row["dataset"] == dataset:
                groups.setdefault(row["model"], []).append(row)
        means = {model: statistics.fmean(r["test"][key] for r in group) for model, group in groups.items()}
        for model, group in groups.items():
            values = [r["test"][key] for r in group]
            summary.append({
                "dataset": dataset, "task": task, "metric": key, "model": model, "seeds": len(values),
                "mean": means[model], "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "params": statistics.fmean(r["params"] for r in group), "hidden": group[0]["hidden"],
                "minus_relu": means[model] - means["relu"] if "relu" in means else None,
            })
    return summary


MODELS = (*LUTNET_MODELS, *LEARNING_PEERS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits and wine, seed 0, 5 s per peer (a plumbing check)")
    parser.add_argument("--datasets", nargs="+", choices=list(BUDGETS), help="data sets to run (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"split/initialization seeds (default: {list(SEEDS)})")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="models to run (default: all)")
    parser.add_argument("--bins", type=int, help="LUT models with this many bins instead of the default, named lut_*_binsN "
                        "(to score on test a setting chosen on validation by benchmarks.tuning)")
    parser.add_argument("--convnet", action="store_true", help=f"lutnet's convnets instead of MLPs on the image sets {list(CONVNET_BUDGETS)} "
                        "(default: mnist5k), results under <set>_convnet; the peers are MLPs and do not run")
    parser.add_argument("--merge", action="store_true", help="add the runs to the existing results file, replacing only the "
                        "(data set, seed, model) rows run now (e.g. --seeds 3 4 --merge adds two seeds)")
    parser.add_argument("--out", help="results name under benchmarks/results (default: accuracy, or accuracy_convnet with --convnet); "
                        "the report reads every accuracy*.json")
    args = parser.parse_args(argv)
    family = "convnet" if args.convnet else "mlp"
    if args.convnet:
        datasets = args.datasets or ["mnist5k"]
        unknown = [d for d in datasets if d not in CONVNET_BUDGETS]
        if unknown:
            parser.error(f"--convnet runs on the image sets {list(CONVNET_BUDGETS)}, not {unknown}")
        names = [m for m in args.models or LUTNET_MODELS if m in LUTNET_MODELS]
    else:
        datasets = args.datasets or (["digits", "wine"] if args.quick else [d for d in BUDGETS if d not in formulas.TASKS])  # fitting: its own suite
        names = args.models or MODELS
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    out = args.out or ("accuracy_convnet" if args.convnet else "accuracy")
    try:
        path = measure(out, datasets, seeds, chosen_models(names, args.bins), args.quick, merge=args.merge, family=family)
    except LutnetError as error:
        print(f"benchmarks.accuracy: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def chosen_models(names: Sequence[str], bins: int | None) -> dict[str, dict[str, Any] | None]:
    """Model name -> TrainConfig overrides (None for peers); ``bins`` renames and re-bins the LUT models."""
    models: dict[str, dict[str, Any] | None] = {}
    for name in names:
        overrides = LUTNET_MODELS.get(name)
        if bins is not None and overrides is not None and overrides["activation"] == "lut":
            name, overrides = f"{name}_bins{bins}", {**overrides, "bins": bins}
        models[name] = overrides
    return models


def measure(out: str, datasets: Sequence[str], seeds: Sequence[int], models: dict[str, dict[str, Any] | None], quick: bool,
            merge: bool = False, family: str = "mlp") -> Path:
    """Run every data set in turn, rewriting the results file after each, so an interrupted run keeps what it measured.

    With ``merge`` each (data set, seed, model) measured now replaces its row in the existing results file and every other
    row is kept as it was, so peers (or more seeds) can be added to lutnet's results without training lutnet's models again.
    """
    for folder in (WORK, PEER_WORK):
        folder.mkdir(parents=True, exist_ok=True)
    if family != "mlp":
        models = {name: None if overrides is None else {**overrides, "model": family} for name, overrides in models.items()}
    peers = [model for model in models if model in LEARNING_PEERS]
    settings = {"budgets": {dataset_key(n, family): budget_of(n, family) for n in datasets}, "seeds": list(seeds), "depth": DEPTH,
                "family": family, "models": models,
                "quick": quick, "trainer_defaults": dataclasses.asdict(TrainConfig()),
                "parameter_count": "trainable parameters: weights, biases and LUT tables (K+1 per channel); lo/hi not counted",
                "peer_seconds_cap": {n: 5.0 if quick else PEER_SECONDS.get(n, DEFAULT_PEER_SECONDS) for n in datasets},
                "peer_epochs": PEER_EPOCHS}
    setup = [ensure(PEERS[peer]) for peer in peers]
    earlier = earlier_results(out) if merge else {"settings": settings, "peer_setup": [], "runs": [], "summary": []}
    tasks = {entry["dataset"]: entry["task"] for entry in earlier["summary"]}
    if merge:
        settings = merged_settings(earlier, settings)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(datasets) * len(seeds) * len(models), desc=out, unit="run") as bar:
        for done, name in enumerate(datasets, 1):
            rows += run_dataset(name, seeds, models, quick, bar)
            tasks[dataset_key(name, family)] = load_dataset(name).task
            runs = kept_rows(earlier["runs"], rows) + rows
            path = write_results(out, {"settings": settings, "peer_setup": earlier["peer_setup"] + setup, "complete": done == len(datasets),
                                       "runs": runs, "summary": summarize_rows(runs, tasks)})
    return path


def kept_rows(earlier: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier rows that no row measured now replaces (one row per data set, seed and model)."""
    key = lambda row: (row["dataset"], row["seed"], row["model"])  # noqa: E731
    replaced = {key(row) for row in measured}
    return [row for row in earlier if key(row) not in replaced]


def earlier_results(out: str) -> dict[str, Any]:
    """The results file that a merging run adds its models to."""
    path = RESULTS_DIR / f"{out}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LutnetError(f"results to merge into ({path})", expected="a results file written by this suite", got=str(error)) from None


def merged_settings(earlier: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """The earlier run's settings (with any the added run has and it lacks), the added models, budgets and peer caps, and a
    record of what each merge ran and onto what (with the trainer defaults that differ from the earlier run's, if any)."""
    before = earlier["settings"]
    merge = {"models": list(added["models"]), "datasets": list(added["budgets"]), "seeds": added["seeds"], "quick": added["quick"],
             "onto_machine": earlier.get("machine")}
    changed = changed_defaults(before, added)
    if changed:
        merge["trainer_defaults_changed"] = changed
    return {**added, **before, "models": {**before["models"], **added["models"]}, "budgets": {**before["budgets"], **added["budgets"]},
            "peer_seconds_cap": {**before["peer_seconds_cap"], **added["peer_seconds_cap"]}, "merges": [*before.get("merges", []), merge]}


def changed_defaults(before: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """The added run's trainer defaults that differ from those the earlier results record (none when they record none)."""
    if "trainer_defaults" not in before:
        return {}
    now = json.loads(json.dumps(added["trainer_defaults"]))  # tuples as the file holds them: lists
    return {key: value for key, value in now.items() if before["trainer_defaults"].get(key) != value}

if __name__ == "__main__":
    raise SystemExit(main())
