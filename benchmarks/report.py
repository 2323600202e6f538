"""Renders ``benchmarks/RESULTS.md`` (tables and PNG plots) and the README's results snippet from ``benchmarks/results/*.json``.

Run ``python -m benchmarks report [--readme README.md]``; takes seconds. Every number comes from the JSON files;
a suite that has not been run yet is named as such. The README snippet replaces the text between
``<!-- results:start -->`` and ``<!-- results:end -->`` (written atomically; missing markers are an error).
"""
from __future__ import annotations

import json
import math
import statistics
from datetime import datetime
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR
from lutnet.atomic import write_text_atomic
from lutnet.errors import LutnetError

RESULTS_MD = RESULTS_DIR.parent / "RESULTS.md"
START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"
LUT_MODELS = ("lut_linear", "lut_nearest")
PEER_MODELS = ("pykan", "deepsplines", "inkan")
MODEL_ORDER = ("lut_linear", "lut_linear_to_nearest", "lut_nearest", "relu", "gelu", *PEER_MODELS)
SUITE_COMMANDS = {
    "accuracy": "python -m benchmarks accuracy", "inference": "python -m benchmarks inference",
    "training_cost": "python -m benchmarks training", "serve_speed": "python -m benchmarks serving",
    "serving_peers": "python -m benchmarks serving", "shapes": "python -m benchmarks shapes", "tuning": "python -m benchmarks.tuning",
    "hardening": "python -m benchmarks.hardening", "function_fitting": "python -m benchmarks fitting",
    "monitor_cost": "python -m benchmarks.monitor_cost", "drift": "python -m benchmarks.drift",
    "module_export": "python -m benchmarks.module_export", "int8": "python -m benchmarks.int8",
    "int8_accuracy": "python -m benchmarks.int8 --accuracy", "equal_latency": "python -m benchmarks.equal_latency",
}
FITTING_RATIO_TARGET = 0.7  # median test RMSE of lut_linear over the ReLU MLP's across the function-fitting tasks
FITTING_WINS_TARGET = 6  # tasks where lut_linear beats both ReLU and GELU beyond the standard error
HARDENING_COST = 0.97  # the hardening (auth, body limits and deadlines) may cost at most 3% of requests per second at c=1 and c=64
Results = dict[str, dict[str, Any]]


def load_results(folder: Path = RESULTS_DIR) -> Results:
    """Every ``<suite>.json`` in ``folder`` by suite name; an unreadable file is an error naming it."""
    results = {}
    for path in sorted(folder.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise LutnetError(f"results file {path}", expected="a JSON object written by a benchmark suite", got=str(error)) from None
    return results


# --- formatting ----------------------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """Seconds in the unit that reads best: 4.7 us, 219 us, 6.9 ms, 1.20 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def missing(suite: str) -> str:
    return f"_Not measured yet: run `{SUITE_COMMANDS.get(suite, 'python -m benchmarks all')}`._"


def measured_on(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    return f"_Measured {machine.get('date', '?')} on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), Python {machine.get('python', '?')}._"


def ordered(models: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(MODEL_ORDER)}
    return sorted(models, key=lambda name: (rank.get(name, len(rank)), name))


# --- suite 1: accuracy -----------------------------------------------------------------------------------

def verdict(entry: dict[str, Any], relu: dict[str, Any]) -> str:
    """Better, worse or within noise against the ReLU MLP: the gap compared with the standard error of the two means."""
    if entry["model"] == "relu":
        return "baseline"
    higher_is_better = entry["metric"] == "accuracy"
    gap = entry["mean"] - relu["mean"]
    noise = math.sqrt(entry["std"] ** 2 / entry["seeds"] + relu["std"] ** 2 / relu["seeds"])
    if gap == 0 or (abs(gap) <= noise and min(entry["seeds"], relu["seeds"]) > 1):
        return "tie (within noise)"
    word = "**wins**" if (gap > 0) == higher_is_better else "**loses**"
    return word if min(entry["seeds"], relu["seeds"]) > 1 else f"{word} (1 seed, no spread)"


def accuracy_entries(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    """Summary entries by data set, then model, from every ``accuracy*.json`` (lutnet and peers may run apart).

    Files are read oldest first, so a model measured again in a newer file shows its newer numbers.
    """
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    studies = [result for suite, result in results.items() if suite.startswith("accuracy")]
    for result in sorted(studies, key=lambda r: r.get("machine", {}).get("date", "")):
        for entry in result.get("summary", []):
            entries.setdefault(entry["dataset"], {})[entry["model"]] = entry
    return entries


def accuracy_budgets(results: Results) -> dict[str, int]:
    """Each data set's parameter budget from every ``accuracy*.json`` (the convnets run apart, under ``<set>_convnet``)."""
    budgets: dict[str, int] = {}
    for suite, result in sorted(results.items()):
        if suite.startswith("accuracy"):
            budgets |= result.get("settings", {}).get("budgets", {})
    return budgets


def metric_cell(entry: dict[str, Any]) -> str:
    return f"{entry['mean']:.4f} ± {entry['std']:.4f}"


def accuracy_section(results: Results) -> str:
    result = results.get("accuracy")
    if result is None:
        return "## Accuracy at equal parameter count\n\n" + missing("accuracy")
    settings = result["settings"]
    parts = [
        "## Accuracy at equal parameter count",
        f"Test metric, mean ± std over seeds {settings['seeds']} (same split for every model of a seed). lutnet models are scored on "
        "their exported ONNX models with onnxruntime (`lut_linear`/`lut_nearest`: one trained LUT model exported in each lookup mode). "
        f"Parameters: {settings['parameter_count']}. Verdict against the ReLU MLP: the gap of the means against their standard error. "
        "Sets named `<set>_convnet` compare lutnet's convnets instead (two 3x3 conv blocks of equal channels, per-channel "
        "activations, 2x2 max pooling; the ReLU row is the ReLU convnet; `python -m benchmarks.accuracy --convnet`).",
        measured_on(result) + changed_defaults_note(settings),
    ]
    for dataset, models in accuracy_entries(results).items():
        relu = models.get("relu")
        rows = []
        for name in ordered(list(models)):
            entry = models[name]
            gap = "" if relu is None else f"{entry['mean'] - relu['mean']:+.4f}"
            rows.append([name, metric_cell(entry), f"{entry['params']:.0f}", "x".join(map(str, entry["hidden"])), gap, verdict(entry, relu) if relu else ""])
        metric = next(iter(models.values()))["metric"]
        budget = accuracy_budgets(results).get(dataset, "?")
        better = "lower is better" if metric == "rmse" else "higher is better"
        parts.append(f"### {dataset} (budget {budget} parameters, test {metric}, {better})\n\n"
                     + table(["model", metric, "params", "hidden", "vs ReLU", "verdict"], rows))
    parts.append("![accuracy](results/accuracy.png)")
    return "\n\n".join(parts)


def fitting_summary(entries: dict[str, dict[str, dict[str, Any]]]) -> tuple[int, float | None]:
    """Tasks where lut_linear beats both the ReLU and the GELU MLP beyond the standard error, and the median RMSE ratio to ReLU."""
    wins, ratios = 0, []
    for models in entries.values():
        lut, relu, gelu = models.get("lut_linear"), models.get("relu"), models.get("gelu")
        if lut is None or relu is None:
            continue
        ratios.append(lut["mean"] / relu["mean"])
        wins += gelu is not None and "wins" in verdict(lut, relu) and "wins" in verdict(lut, {**gelu, "model": "gelu"})
    return wins, statistics.median(ratios) if ratios else None


def changed_defaults_note(settings: dict[str, Any]) -> str:
    """Which rows a ``--merge`` measured under other trainer defaults than the rest of the file's rows."""
    return "".join(f" Rows of {', '.join(merge['models'])} on {', '.join(merge['datasets'])} (seeds {merge['seeds']}) were measured again "
                   f"with `--merge` under the changed trainer defaults `{json.dumps(merge['trainer_defaults_changed'])}`; the other rows keep "
                   "the defaults they were measured with." for merge in settings.get("merges", []) if merge.get("trainer_defaults_changed"))


def function_fitting_section(results: Results) -> str:
    result = results.get("function_fitting")
    if result is None:
        return "## Function fitting at equal parameter count\n\n" + missing("function_fitting")
    verdict_text, rows = fitting_table(result)
    return "\n\n".join(part for part in [
        "## Function fitting at equal parameter count",
        f"Friedman #1-#3 and Feynman formulas generated by `lutnet.training.formulas` (inputs, ranges and noise in each task's `source`). "
        f"Test RMSE divided by the test targets' standard deviation, mean ± std over seeds {result['settings']['seeds']}, every model "
        "at the task's parameter budget; lutnet models scored on their exported ONNX models (`lut_linear_to_nearest`: the same "
        "trained model exported as nearest pockets with `--max-error`). In brackets: against the ReLU MLP, the gap of the means "
        "against their standard error.",
        verdict_text,
        rows,
        fitting_budgets(result),
        measured_on(result) + "".join(f" Rows of {', '.join(merge['models'])} added with `--merge` to results measured "
                                      f"{(merge.get('onto_machine') or {}).get('date', '?')}." for merge in result["settings"].get("merges", [])),
        *fitting_plots(results),
    ] if part)


def fitting_budgets(result: dict[str, Any]) -> str:
    """How long each kind of model trained: lutnet's epochs and patience, the peers' epoch and time caps and how often the cap ended a run."""
    settings = result["settings"]
    trainer = settings.get("trainer_defaults", {})
    text = f"lutnet's models train for at most {trainer.get('epochs', '?')} epochs (patience {trainer.get('patience', '?')})."
    runs = [row for row in result.get("runs", []) if row["model"] in PEER_MODELS]
    if not runs or "peer_epochs" not in settings:
        return text
    caps = sorted({settings["peer_seconds_cap"][row["dataset"]] for row in runs})
    per_peer = []
    for peer in (peer for peer in PEER_MODELS if any(row["model"] == peer for row in runs)):
        own = [row for row in runs if row["model"] == peer]
        capped = [row for row in own if row["epochs"] < settings["peer_epochs"]]
        still_best = sum(row.get("best_epoch") == row["epochs"] for row in capped)
        per_peer.append(f"{peer} {len(capped)} of {len(own)} ({still_best} of them at an epoch that was still their best; "
                        f"median {statistics.median(row['epochs'] for row in own):.0f} epochs)")
    seeds = "; ".join(f"{', '.join(merge['models'])} on seeds {merge['seeds']}" for merge in settings.get("merges", []))
    return (f"{text} The learning peers (their runners' one hidden layer at the same budget, Adam, best validation epoch, scored in torch"
            f"{'; added by `--merge`: ' + seeds if seeds else ''}) train for at most {settings['peer_epochs']} epochs or "
            f"{' / '.join(f'{cap:g}' for cap in caps)} s of training, whichever comes first. Runs the time cap ended early: "
            f"{'; '.join(per_peer)}.")


def fitting_plots(results: Results) -> list[str]:
    """The plots of each task's learned tables (``python -m benchmarks.function_fitting --plots``), with what they show."""
    plotted = results.get("fitting_plots")
    if plotted is None:
        return ["_Plots of the learned activations: not drawn yet: run `python -m benchmarks.function_fitting --plots`._"]
    parts = [
        "### Learned activations per task",
        f"Each task's seed-{plotted['seed']} `{plotted['model']}` model, trained as the suite trains it "
        "(`python -m benchmarks.function_fitting --plots`) and drawn with `lutnet plot`'s renderer: solid the learned table, dashed "
        "its init, shaded outside the calibrated range. The first layer's channels are grouped and labelled by the input with the "
        "largest share of their weights (on standardized inputs), which is where a formula's structure, such as a sine of an angle, "
        "can show; the second layer's channels see mixtures of the first layer's.",
        measured_on(plotted),
    ]
    for task, plot in plotted["plots"].items():
        moved = ", ".join(f"{m:.3f}" for m in plot["table_movement"])
        parts.append(f"#### {task}\n\n`{plot['formula']}`: hidden {'x'.join(map(str, plot['hidden']))}, test RMSE / std "
                     f"{plot['test_relative_rmse']:.3f}, tables moved {moved} from init (relative L2, per layer).\n\n"
                     f"![learned activations of {task}](results/{plot['png']})")
    return parts


def fitting_table(result: dict[str, Any]) -> tuple[str, str]:
    """The suite's verdict against its targets, and its table: tasks as rows, models as columns."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in result["summary"]:
        entries.setdefault(entry["dataset"], {})[entry["model"]] = entry
    models = ordered(sorted({m for per in entries.values() for m in per}))
    rows = []
    for task, per in entries.items():
        cells = [f"{metric_cell(per[m])} ({verdict(per[m], per['relu']).replace('**', '')})" if m in per and "relu" in per else "" for m in models]
        rows.append([task, *cells])
    wins, ratio = fitting_summary(entries)
    verdict_text = (f"lut_linear beats both the ReLU and the GELU MLP beyond the standard error on **{wins} of {len(entries)}** tasks "
                    f"(target: at least {FITTING_WINS_TARGET}); the median ratio of its test RMSE to the ReLU MLP's is "
                    f"**{ratio:.3f}** (target: at most {FITTING_RATIO_TARGET}).") if ratio is not None else ""
    return " ".join(filter(None, [verdict_text, fitting_peer_verdicts(entries)])), table(["task", *models], rows)


def fitting_peer_verdicts(entries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Against each learning peer: on how many tasks lut_linear wins, ties and loses beyond the standard error."""
    tallies: dict[str, dict[str, int]] = {}
    for models in entries.values():
        lut = models.get("lut_linear")
        for peer in (peer for peer in PEER_MODELS if lut is not None and peer in models):
            word = verdict(lut, models[peer])
            tally = tallies.setdefault(peer, {"wins": 0, "ties": 0, "losses": 0})
            tally["wins" if "wins" in word else "losses" if "loses" in word else "ties"] += 1
    if not tallies:
        return ""
    return "Against the learning peers, lut_linear " + "; ".join(
        f"wins on **{t['wins']}**, ties on {t['ties']} and loses on {t['losses']} of {sum(t.values())} tasks against {peer}"
        for peer, t in tallies.items()) + "."


def fitting_headline(results: Results) -> list[str]:
    """The function-fitting verdict and table for the README (nothing before the suite has run)."""
    if "function_fitting" not in results:
        return []
    verdict_text, rows = fitting_table(results["function_fitting"])
    plots = results.get("fitting_plots", {}).get("plots", {})
    links = ", ".join(f"[{task}](benchmarks/results/{plot['png']})" for task, plot in plots.items())
    return [f"**Function fitting at equal parameter count** (test RMSE / std of the targets, mean ± std over seeds; "
            f"lutnet scored on its exported ONNX model; in brackets the verdict against the ReLU MLP): {verdict_text}\n\n{rows}"
            + (f"\n\nThe learned activations of each task against its formula: {links}." if links else "")]


def module_export_table(results: Results) -> str:
    """Fused LUT latency of each exported example over its original activations, and what folding gains."""
    result = results["module_export"]
    rows = []
    for name, example in result["examples"].items():
        cells = []
        for batch in result["batches"]:
            run = example[f"batch_{batch}"]
            median = run["median_us"]
            cells.append(f"{run['fused_vs_original']:.2f}x ({'met' if run['met'] else '**missed**'}; "
                         f"{median['fused']:.1f} us, {median['original']:.1f} us)")
        fold = " / ".join(f"{example[f'batch_{b}']['unfolded_vs_fused']:.2f}x" for b in result["batches"])
        rows.append([name, *cells, fold])
    header = ["example", *[f"batch {b} (target <= {result['targets'][str(b)]}x)" for b in result["batches"]],
              "without fold / with fold (per batch)"]
    return table(header, rows)


def module_export_section(results: Results) -> str:
    if "module_export" not in results:
        return "## Your own module, exported\n\n" + missing("module_export")
    return "\n\n".join([
        "## Your own module, exported",
        "The four examples (`examples/`), each exported by `export_module` and, with its LUT layers put back to the activations "
        "their tables started as, by plain `torch.onnx.export`; onnxruntime, 1 thread, interleaved rounds "
        "(`python -m benchmarks.module_export`). Each cell is fused over original, then the two medians over all samples. "
        "A ratio is the median over rounds of the ratio within a round, which a change of machine speed during the run "
        "cannot tilt; where the speed changed, the quotient of the two medians can differ from it. The last column is the "
        "unfolded export's latency over the fused one's.",
        module_export_table(results),
        measured_on(results["module_export"]),
    ])


def accuracy_headline(results: Results) -> str:
    """Data sets as columns, models as rows; each cell mean ± std, marked where it loses to the ReLU MLP."""
    result = results.get("accuracy")
    if result is None:
        return missing("accuracy")
    entries = accuracy_entries(results)
    models = ordered(sorted({m for per in entries.values() for m in per}))
    header = ["model", *[f"{d} ({next(iter(per.values()))['metric']})" for d, per in entries.items()]]
    rows = []
    for model in models:
        cells = []
        for per in entries.values():
            entry = per.get(model)
            if entry is None:
                cells.append("")
                continue
            said = verdict(entry, per["relu"]) if "relu" in per else ""
            mark = " (loses)" if "loses" in said else " (wins)" if "wins" in said else ""
            cells.append(metric_cell(entry) + mark)
        rows.append([model, *cells])
    return table(header, rows)


# --- accuracy at equal latency -------------------------------------------------------------------------------

def latency_ratio_cell(entry: dict[str, Any], batch: int) -> str:
    """A model's median latency at one batch size over the seeds' runs, with its median ratio to the ReLU MLP."""
    latency = entry["latency_s"][f"batch_{batch}"]
    return f"{duration(latency['median'])} ({latency['ratio_to_relu']:.2f}x)"


def equal_latency_entries(result: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in result["summary"]:
        entries.setdefault(entry["dataset"], {})[entry["model"]] = entry
    return entries


def equal_latency_held(result: dict[str, Any]) -> tuple[int, int]:
    """Sets where lut_linear is at or above the latency-matched ReLU MLP (a tie within the standard error counts), and all sets."""
    entries = equal_latency_entries(result)
    held = sum("loses" not in verdict(per["lut_linear"], per["relu"]) for per in entries.values() if "lut_linear" in per and "relu" in per)
    return held, len(entries)


def matched_latency(result: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Whether the exported LUT graph's batch-1 latency, timed beside the ReLU graph's, is within the tolerance of it."""
    return abs(entry["latency_s"]["batch_1"]["ratio_to_relu"] - 1.0) <= result["settings"]["tolerance"]


def equal_latency_verdict(result: dict[str, Any]) -> str:
    held, sets = equal_latency_held(result)
    entries = equal_latency_entries(result)
    matched = sum(matched_latency(result, per["lut_linear"]) for per in entries.values() if "lut_linear" in per)
    return (f"lut_linear is at or above the latency-matched ReLU MLP (within the standard error counts) on **{held} of "
            f"{sets}** sets (target: every set; **{'met' if held == sets else 'missed'}**). The exported graphs' batch-1 latencies, "
            f"timed side by side after training, are within {100 * result['settings']['tolerance']:.0f}% of each other on "
            f"**{matched} of {sets}** sets.")


def equal_latency_rows(result: dict[str, Any]) -> list[list[object]]:
    """One row per data set: the matched widths and latencies, and each model's test metric with its verdict against ReLU."""
    rows = []
    for dataset, per in equal_latency_entries(result).items():
        search, lut, relu = result["searches"][dataset], per["lut_linear"], per["relu"]
        nearest = per.get("lut_linear_to_nearest")
        ratio = f"{lut['latency_s']['batch_1']['ratio_to_relu']:.2f}x" + ("" if matched_latency(result, lut) else " (**outside**)")
        rows.append([f"{dataset} ({lut['metric']})", f"{search['searched']} matched to {search['reference']}",
                     f"{'x'.join(map(str, lut['hidden']))} / {'x'.join(map(str, relu['hidden']))}", f"{lut['params']:.0f} / {relu['params']:.0f}",
                     ratio, metric_cell(lut), metric_cell(relu),
                     verdict(lut, relu).replace("**", ""),
                     "" if nearest is None else f"{metric_cell(nearest)}, {latency_ratio_cell(nearest, 1)}"])
    return rows


EQUAL_LATENCY_HEADER = ["set (test metric)", "width searched", "hidden LUT / ReLU", "params LUT / ReLU", "batch-1 latency LUT / ReLU",
                        "lut_linear", "relu", "lut_linear vs ReLU", "nearest graph (batch-1 latency, x ReLU)"]


def sessions_note(settings: dict[str, Any]) -> str:
    sessions = settings.get("sessions_per_graph", 1)
    return f", the median over {sessions} sessions of each graph" if sessions > 1 else ""


def equal_latency_section(results: Results) -> str:
    result = results.get("equal_latency")
    if result is None:
        return "## Accuracy at equal inference latency\n\n" + missing("equal_latency")
    settings = result["settings"]
    parts = [
        "## Accuracy at equal inference latency",
        f"Two-hidden-layer MLPs whose widths were searched so that onnxruntime's batch-1 latency (CPU, 1 thread, medians of "
        f"interleaved rounds{sessions_note(settings)}) matches within {100 * settings['tolerance']:.0f}%: first the LUT MLP's width "
        "against the ReLU MLP at the equal-parameter budget; where no LUT width is that fast, the ReLU MLP's width against the LUT MLP "
        "at its budget. Test metric, "
        f"mean ± std over seeds {settings['seeds']}; every model scored on its exported ONNX graph; the latencies are those of the "
        "exported graphs of each seed, timed side by side, median over seeds (ratio to the ReLU MLP in brackets). "
        "`lut_linear_to_nearest` is the same trained LUT model exported as nearest pockets (`--max-error`).",
        equal_latency_verdict(result),
        table(EQUAL_LATENCY_HEADER, equal_latency_rows(result)),
        measured_on(result) + " 1-minute load average " + " and ".join(f"{loads[0]:.1f}" for loads in result["load_average_before_after"])
        + " before and after, on 2 cores shared with other jobs.",
    ]
    for dataset, per in equal_latency_entries(result).items():
        search, relu = result["searches"][dataset], per.get("relu")
        probes = ", ".join(f"{p['width']}: {p['over_reference']:.2f}x" for p in search["probes"][search["searched"]])
        rows = [[name, "x".join(map(str, e["hidden"])), f"{e['params']:.0f}", metric_cell(e), *(latency_ratio_cell(e, b) for b in settings["batches"]),
                 "" if relu is None else f"{e['mean'] - relu['mean']:+.4f}", verdict(e, relu) if relu else ""]
                for name, e in ((name, per[name]) for name in ordered(list(per)))]
        parts.append(f"### {dataset} (test {next(iter(per.values()))['metric']})\n\n"
                     f"Search: {search['searched']} width against {search['reference']} at width {search['widths'][search['reference']]}, "
                     f"latency over the reference by width: {probes}.\n\n"
                     + table(["model", "hidden", "params", "test metric", *(f"batch {b}" for b in settings["batches"]), "vs ReLU", "verdict"], rows))
    return "\n\n".join(parts)


def equal_latency_headline(results: Results) -> list[str]:
    """The equal-latency verdict and table for the README (nothing before the suite has run)."""
    result = results.get("equal_latency")
    if result is None:
        return []
    return ["**Accuracy at equal inference latency** (widths searched so that onnxruntime's batch-1 latency matches within "
            f"{100 * result['settings']['tolerance']:.0f}%; test metric, mean ± std over seeds; the deployed nearest graph's latency beside "
            f"its metric; `python -m benchmarks.equal_latency`): {equal_latency_verdict(result)}\n\n"
            + table(EQUAL_LATENCY_HEADER, equal_latency_rows(result))]


# --- suite 2: inference ------------------------------------------------------------------------------------

def latency_cell(run: dict[str, Any], name: str) -> str:
    """A model's median latency in one run, with its ratio to the ReLU MLP of that run."""
    return f"{duration(run['timings_s'][name]['median'])} ({run['ratio_to_relu'][name]:.2f}x)"


def inference_section(results: Results) -> str:
    result = results.get("inference")
    if result is None:
        return "## Inference latency\n\n" + missing("inference")
    settings = result["settings"]
    parts = [
        "## Inference latency (onnxruntime, CPU)",
        f"Models at the {settings['dataset']} budget (~{settings['budget']} parameters); median seconds per `session.run`, "
        "ratio to the ReLU MLP of the same run in brackets; runners interleaved round by round. "
        "`torch_eager_lut_linear` is PyTorch eager on the separated (unfused) LUT model.",
        measured_on(result),
    ]
    for threads in settings["threads"]:
        runs = [run for run in result["runs"] if run["threads"] == threads]
        models = ordered(list(runs[0]["timings_s"]))
        rows = [[name, result["graphs"].get(name, {}).get("nodes", "-"),
                 *[latency_cell(run, name) for run in runs]] for name in models]
        parts.append(f"### {threads} thread{'s' if threads > 1 else ''}\n\n" + table(["model", "nodes", *[f"batch {run['batch']}" for run in runs]], rows))
    parts.append("![inference](results/inference.png)")
    return "\n\n".join(parts)


def inference_headline(results: Results) -> str:
    result = results.get("inference")
    if result is None:
        return missing("inference")
    runs = [run for run in result["runs"] if run["threads"] == 1]
    models = ordered(list(runs[0]["timings_s"]))
    rows = [[name, *[latency_cell(run, name) for run in runs]] for name in models]
    return table(["model (1 thread)", *[f"batch {run['batch']}" for run in runs]], rows)


# --- suite 3: training cost -------------------------------------------------------------------------------

def training_section(results: Results) -> str:
    result = results.get("training_cost")
    if result is None:
        return "## Training cost\n\n" + missing("training_cost")
    datasets = result["datasets"]
    models = ordered(sorted({m for d in datasets.values() for m in d["seconds_per_epoch"]}))
    rows = []
    for name in models:
        cells = []
        for d in datasets.values():
            seconds = d["seconds_per_epoch"].get(name)
            cells.append("" if seconds is None else f"{duration(seconds['median'])} ({d['ratio_to_relu'][name]:.2f}x)")
        rows.append([name, *cells])
    return "\n\n".join([
        "## Training cost",
        "Median seconds per epoch (batch 64, one thread) at each data set's parameter budget; ratio to the ReLU MLP in brackets. "
        "lutnet models run the trainer's own epoch; the peers report their runner's median epoch.",
        measured_on(result),
        table(["model", *[f"{name} ({d['train_rows']} rows)" for name, d in datasets.items()]], rows),
    ])


# --- suite 4: serving ----------------------------------------------------------------------------------------

SERVE_SPEED_ROWS = {
    "bare FastAPI constant (ceiling)": "bare_c{c}",
    "lean FastAPI + orjson + onnxruntime": "lean_c{c}",
    "lutnet serve (defaults: --execution auto --batching)": "v2_json_b1_c{c}",
    "lutnet serve --no-batching": "unbatched_v2_json_b1_c{c}",
    "lutnet serve --execution inline --no-batching": "inline_v2_json_b1_c{c}",
    "lutnet serve --execution inline --batching": "inline_batching_v2_json_b1_c{c}",
    "lutnet serve --execution thread --batching": "thread_v2_json_b1_c{c}",
    "lutnet serve --execution thread --no-batching": "thread_unbatched_v2_json_b1_c{c}",
}
CONCURRENCIES = (1, 8, 64)


def load_row(server: str, concurrency: int, values: dict[str, float]) -> list[object]:
    return [server, concurrency, f"{values['requests_per_second']:.0f}", *(f"{values[f'p{q}_ms']:.2f}" for q in (50, 95, 99))]


def serving_rows(results: Results) -> list[list[object]]:
    """One row per (server, concurrency) found in serve_speed.json and serving_peers.json."""
    rows: list[list[object]] = []
    medians = results.get("serve_speed", {}).get("medians", {})
    for server, pattern in SERVE_SPEED_ROWS.items():
        for c in CONCURRENCIES:
            values = medians.get(pattern.format(c=c))
            if values is not None:
                rows.append(load_row(server, c, values))
    for peer in results.get("serving_peers", {}).get("serving", []):
        for c in CONCURRENCIES:
            values = peer.get(f"c{c}")
            if values is not None:
                rows.append(load_row(peer["peer"], c, values))
    return rows


def serving_ratios(results: Results) -> list[list[object]]:
    """lutnet serve's req/s over KServe's at each concurrency measured for both (target: at least 3x)."""
    medians = results.get("serve_speed", {}).get("medians", {})
    kserve = next((p for p in results.get("serving_peers", {}).get("serving", []) if p["peer"] == "kserve"), None)
    rows = []
    for c in CONCURRENCIES:
        ours, theirs = medians.get(f"v2_json_b1_c{c}"), (kserve or {}).get(f"c{c}")
        if ours and theirs:
            ratio = ours["requests_per_second"] / theirs["requests_per_second"]
            rows.append([c, f"{ratio:.2f}x", "met" if ratio >= 3.0 else "**missed**"])
    return rows


def serving_headline(results: Results) -> str:
    """Servers as rows, concurrency levels as columns: req/s (p99 ms)."""
    cells: dict[str, dict[int, str]] = {}
    for server, concurrency, rps, _, _, p99 in serving_rows(results):
        cells.setdefault(str(server), {})[int(concurrency)] = f"{rps} ({p99} ms)"
    if not cells:
        return missing("serve_speed")
    rows = [[server, *(by_level.get(c, "") for c in CONCURRENCIES)] for server, by_level in cells.items()]
    ratios = {row[0]: f"{row[1]} ({row[2]})" for row in serving_ratios(results)}
    if ratios:
        rows.append(["lutnet / KServe (target >= 3x)", *(ratios.get(c, "") for c in CONCURRENCIES)])
    text = table(["server", *(f"c={c}" for c in CONCURRENCIES)], rows)
    if ratios and not same_run(results["serve_speed"], results["serving_peers"]):
        text += "\n\n**lutnet and the peers were measured in different runs**; `python -m benchmarks serving` measures both in one run."
    return text


def batch256_rows(results: Results) -> list[list[object]]:
    """JSON and binary req/s at batch 256 for lutnet and the lean endpoint, where both were measured."""
    medians = results.get("serve_speed", {}).get("medians", {})
    rows = []
    servers = (("lutnet serve (defaults)", "v2"), ("lean FastAPI + orjson + onnxruntime", "lean"), ("lutnet serve, same shape with ReLU", "relu"))
    for server, prefix in servers:
        json_b256, binary_b256 = medians.get(f"{prefix}_json_b256_c1"), medians.get(f"{prefix}_binary_b256_c1")
        if json_b256 and binary_b256:
            json_rps, binary_rps = json_b256["requests_per_second"], binary_b256["requests_per_second"]
            rows.append([server, f"{json_rps:.0f}", f"{binary_rps:.0f}", f"{binary_rps / json_rps:.2f}x"])
    return rows


def same_run(first: dict[str, Any], second: dict[str, Any], within_s: float = 1800.0) -> bool:
    """Whether two results files were written within ``within_s`` seconds of each other (one suite run)."""
    dates = [datetime.fromisoformat(r.get("machine", {}).get("date", "1970-01-01T00:00:00+00:00")) for r in (first, second)]
    return abs((dates[0] - dates[1]).total_seconds()) <= within_s


SERVING_HEADER = ["server", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms"]


def request_path_section(results: Results) -> str:
    result = results.get("request_path")
    if result is None:
        return "### Hot-path calls\n\n" + missing("request_path")
    cpu = request_cpu_us(results)
    header = ["call", "median per call", *[f"share of a request's server CPU, c={c}" for c in cpu]]
    share = lambda name, seconds: [f"{100 * seconds * 1e6 / us:.1f} %" if "batch 1" in name else "" for us in cpu.values()]  # noqa: E731
    rows = [[name, duration(timing["median"]), *share(name, timing["median"])] for name, timing in result["timings_s"].items()]
    return "\n\n".join([
        "### Hot-path calls (in-process, interleaved; `python -m benchmarks.request_path`)",
        f"{result['settings']['model']}, {result['settings']['threads']} onnxruntime thread. The service calls the public "
        f"`session.run`: {result['public_over_private_run']:.2f}x the private binding call in this run. The shares divide each "
        "call by the server's CPU time per batch-1 JSON request measured by `benchmarks.hardening` (its current server).",
        table(header, rows),
        measured_on(result),
    ])


def request_cpu_us(results: Results) -> dict[int, float]:
    """The serving server's CPU microseconds per batch-1 JSON request by concurrency, where the hardening run measured them."""
    medians = results.get("hardening", {}).get("speed", {}).get("medians", {})
    return {c: medians[f"after_c{c}"]["server_cpu_us_per_request"] for c in (1, 64) if f"after_c{c}" in medians}


def serving_section(results: Results) -> str:
    if "serve_speed" not in results and "serving_peers" not in results:
        return "## Serving\n\n" + missing("serve_speed")
    parts = ["## Serving (batch-1 v2 JSON infer, one worker, server and wrk on separate cores)"]
    parts += [measured_on(results[suite]) + f" ({suite})" for suite in ("serve_speed", "serving_peers") if suite in results]
    parts.append(table(SERVING_HEADER, serving_rows(results)))
    b256 = batch256_rows(results)
    if b256:
        parts.append("Batch 256 at concurrency 1, JSON against binary tensors (target for lutnet: binary at least 2x JSON; the lean "
                     "endpoint, which validates nothing and computes on the event loop, shows what this model's compute leaves possible; "
                     "the ReLU model of the same shape, whose compute costs about half, shows the ratio with cheaper compute):\n\n"
                     + table(["server", "JSON req/s", "binary req/s", "binary / JSON"], b256))
    ratios = serving_ratios(results)
    if ratios:
        parts.append("lutnet serve against KServe (target: at least 3x):\n\n" + table(["concurrency", "lutnet / KServe req/s", "target"], ratios))
        if not same_run(results["serve_speed"], results["serving_peers"]):
            parts.append("**These ratios compare two runs made at different times (dates above)**; "
                         "`python -m benchmarks serving` measures both in one run.")
    if "serving_peers" not in results:
        parts.append(missing("serving_peers"))
    parts.append(request_path_section(results))
    return "\n\n".join(parts)


# --- suite 5: learned shapes ----------------------------------------------------------------------------------

def shapes_section(results: Results) -> str:
    result = results.get("shapes")
    if result is None:
        return "## Learned shapes\n\n" + missing("shapes")
    parts = ["## Learned activation shapes", result.get("method", ""), measured_on(result)]
    for model in result["models"]:
        rows = [[layer["layer"], layer["channels"], f"{layer['distance_mean']:.3f}", f"{layer['distance_max']:.3f}",
                 f"{layer['relu_like_fraction']:.2f}", f"{layer['bend_median']:+.2f}", f"{layer['bend_iqr'][0]:+.2f} .. {layer['bend_iqr'][1]:+.2f}"]
                for layer in model["layers"]]
        parts.append(f"### {model['dataset']} (test accuracy {model['test_accuracy']:.4f})\n\n"
                     + table(["layer", "channels", "mean dist. from init", "max dist. from init", "ReLU-like fraction",
                              "median bend (pre-activation)", "bend IQR"], rows)
                     + f"\n\n{model['reading']}\n\n![{model['dataset']} activations]({model['plot']})"
                     + (f"\n\n`lutnet plot`: ![lutnet plot of {model['dataset']}](results/{model['lutnet_plot']})" if model.get("lutnet_plot") else ""))
    return "\n\n".join(parts)


# --- tuning -----------------------------------------------------------------------------------------------

def tuning_section(results: Results) -> str:
    """Every ``tuning*.json`` (one per study), candidates per data set with their gap to the LUT default."""
    studies = {suite: result for suite, result in sorted(results.items()) if suite.startswith("tuning")}
    if not studies:
        return "## Tuning of the LUT defaults\n\n" + missing("tuning")
    parts = ["## Tuning of the LUT defaults (validation split only)",
             "One setting changed at a time from the `lutnet train` defaults (or a pair, marked `+`), each candidate re-sized to the "
             "data set's budget, mean ± std of the validation metric over the seeds shown. The test split is never read."]
    for suite, result in studies.items():
        sizing = "at the default hidden widths, no budget" if result["settings"].get("budgets") is None else "budget-matched"
        parts.append(f"{measured_on(result)} (`{suite}.json`, seeds {result['settings']['seeds']}, {sizing})")
        by_dataset: dict[str, list[dict[str, Any]]] = {}
        for candidate in result["candidates"]:
            by_dataset.setdefault(candidate["dataset"], []).append(candidate)
        for dataset, candidates in by_dataset.items():
            parts.append(f"### {dataset} ({suite})\n\n" + tuning_table(candidates))
    return "\n\n".join(parts)


def tuning_table(candidates: list[dict[str, Any]]) -> str:
    default = next((c for c in candidates if c["candidate"] == "lut_default"), None)
    rows = []
    for c in candidates:
        gap = "" if default is None else f"{c['val_mean'] - default['val_mean']:+.4f}"
        rows.append([c["candidate"], json.dumps(c["overrides"]), c["runs"][0]["width"], f"{c['val_mean']:.4f} ± {c['val_std']:.4f}",
                     f"{c['val_loss_mean']:.4f}", gap])
    return table(["candidate", "change", "width", f"val {candidates[0]['metric']}", "val loss", "vs LUT default"], rows)


# --- plots ------------------------------------------------------------------------------------------------

def plot_accuracy(results: Results, path: Path) -> None:
    """Grouped bars of the test metric (mean ± std) per data set and model."""
    import matplotlib.pyplot as plt

    entries = accuracy_entries(results)
    fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3.4), squeeze=False)
    for ax, (dataset, per) in zip(axes[0], entries.items(), strict=True):
        models = ordered(list(per))
        ax.bar(range(len(models)), [per[m]["mean"] for m in models], yerr=[per[m]["std"] for m in models], capsize=3,
               color=["tab:orange" if m.startswith("lut") else "tab:blue" if m in ("relu", "gelu") else "tab:gray" for m in models])
        ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=8)
        low = min(per[m]["mean"] - per[m]["std"] for m in models)
        high = max(per[m]["mean"] + per[m]["std"] for m in models)
        ax.set_ylim((max(0.0, low - 0.02), 1.0) if per[models[0]]["metric"] != "rmse" else (0.95 * low, 1.02 * high))
        ax.set_title(f"{dataset} ({per[models[0]]['metric']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_inference(results: Results, path: Path) -> None:
    """Latency against batch size per model, one panel per thread count (log-log)."""
    import matplotlib.pyplot as plt

    result = results["inference"]
    threads = result["settings"]["threads"]
    fig, axes = plt.subplots(1, len(threads), figsize=(5 * len(threads), 3.6), squeeze=False)
    for ax, count in zip(axes[0], threads, strict=True):
        runs = [run for run in result["runs"] if run["threads"] == count]
        for name in ordered(list(runs[0]["timings_s"])):
            ax.plot([run["batch"] for run in runs], [run["timings_s"][name]["median"] * 1e6 for run in runs], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="median latency (us)", title=f"{count} thread(s)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS: dict[str, tuple[str, Callable[[Results, Path], None]]] = {
    "accuracy": ("accuracy.png", plot_accuracy),
    "inference": ("inference.png", plot_inference),
}


def draw_plots(results: Results, folder: Path = RESULTS_DIR) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for suite, (name, draw) in PLOTS.items():
        if suite in results:
            draw(results, folder / name)
            written.append(folder / name)
    return written


# --- documents ----------------------------------------------------------------------------------------------

def target_rows(results: Results) -> list[list[object]]:
    """The issues' speed targets as measured: the training epoch, the fused graph at the reference shape, serving, and
    accuracy at equal latency."""
    rows: list[list[object]] = []
    if "equal_latency" in results:
        held, sets = equal_latency_held(results["equal_latency"])
        rows.append(["equal batch-1 latency: lut_linear at or above the ReLU MLP (test metric, within the standard error)",
                     f"{held} of {sets} sets", "every set", "met" if held == sets else "**missed**"])
    train = results.get("train_speed", {})
    if "chosen" in train:
        chosen, limit = train["chosen"], train["target"][train["chosen"]["ratio"]]
        rows.append([f"training epoch, digits MLP, {chosen['ratio']} (batch {chosen['batch_size']}, {chosen['lookup']})",
                     f"{chosen['wall']:.2f}x", f"<= {limit}x", "met" if chosen["wall"] <= limit else "**missed**"])
    for entry in results.get("export_speed", {}).get("targets", []):
        if "ratio" in entry:
            mode, extrapolate = entry["lookup"].split("_")
            rows.append([f"fused {mode} (extrapolate {extrapolate}) / ReLU, 64-256-256-10, K=64, batch {entry['batch']}, 1 thread",
                         f"{entry['ratio']:.2f}x", f"<= {entry['target']}x", "met" if entry["met"] else "**missed**"])
        else:
            rows.append([f"PyTorch eager / fused, batch {entry['batch']}", f"{entry['torch_eager_over_fused']:.1f}x",
                         f">= {entry['target']}x", "met" if entry["met"] else "**missed**"])
    serve = results.get("serve_speed", {})
    for name, value in serve.get("comparisons", {}).items():
        if name in serve.get("targets", {}):
            limit, met = serve["targets"][name], serve["targets_met"][name]
            bound = f"<= {limit} ms" if name.endswith("_ms") else f">= {limit}x"
            shown = f"{value:.1f} ms" if name.endswith("_ms") else f"{value:.2f}x"
            rows.append([f"serving (defaults): {name.replace('_', ' ')}", shown, bound, "met" if met else "**missed**"])
    hardening = results.get("hardening", {})
    if "profile" in hardening:  # measured inside one process; the req/s comparison stays in the hardening section
        shares = hardening["profile"]
        for c in (1, 64):
            share = shares[f"c{c}"]["hardening_share"]
            rows.append([f"hardening cost: share of the server's CPU samples, c={c} (py-spy)", f"{100 * share:.1f} %",
                         f"<= {100 * shares['target_share']:.0f} %", "met" if shares["target_met"][f"c{c}"] else "**missed**"])
        return rows
    for name, ratio in hardening.get("speed", {}).get("ratios", {}).items():
        if not name.startswith("after_vs_before"):
            continue
        rows.append([f"hardening cost: req/s {name.replace('_', ' ')}", f"{ratio:.3f}x", f">= {HARDENING_COST}x",
                     "met" if ratio >= HARDENING_COST else "**missed**"])
    return rows


def hardening_rows(results: Results) -> list[list[object]]:
    """Batch-1 traffic beside eight clients sending large bodies, before and after the hardening, fresh servers."""
    large = results.get("hardening", {}).get("large_bodies", {})
    rows = []
    for load in dict.fromkeys(key.split("_", 1)[1] for key in large):
        before, after = large.get(f"before_{load}"), large.get(f"after_{load}")
        if before is None or after is None:
            continue
        rows.append([load.replace("_", " "), *(f"{run['batch1']['p99_ms']:.2f} ms" for run in (before, after)),
                     *(f"{run['batch1']['requests_per_second']:.0f}" for run in (before, after)),
                     *(f"{run['peak_rss_mb']:.0f} MB" for run in (before, after)),
                     ", ".join(f"{status}: {count}" for status, count in after.get("large_body_answers", {}).items()) or "-"])
    return rows


def hardening_profile(hardening: dict[str, Any]) -> list[str]:
    """The py-spy table of the hardening's share of the server's CPU samples, when the run had one."""
    if "profile" not in hardening:
        return []
    shares = hardening["profile"]
    rows = [[f"c={c}", shares[f"c{c}"]["samples"], shares[f"c{c}"]["hardening_samples"], f"{100 * shares[f'c{c}']['hardening_share']:.2f} %"]
            for c in (1, 64)]
    return ["Inside one process: py-spy's samples (500 Hz, idle excluded) of this checkout's server under the same load, and "
            "those in the hardening on the request path: the body deadlines with the standard-library calls they make, and "
            "the body read with its limit checks, counted whole (an upper bound):",
            table(["concurrency", "samples", "in the hardening", "share"], rows)]


def hardening_section(results: Results) -> str:
    if "hardening" not in results:
        return "## Hardening: request limits and deadlines\n\n" + missing("hardening")
    hardening = results["hardening"]
    speed = hardening["speed"]["medians"]
    ratios = hardening["speed"]["ratios"]
    speed_rows = [[f"c={c}", f"{speed[f'before_c{c}']['requests_per_second']:.0f}", f"{speed[f'after_c{c}']['requests_per_second']:.0f}",
                   f"{ratios[f'after_vs_before_c{c}']:.3f}x", f"{speed[f'before_c{c}']['server_cpu_us_per_request']:.1f}",
                   f"{speed[f'after_c{c}']['server_cpu_us_per_request']:.1f}", f"{ratios[f'cpu_per_request_after_vs_before_c{c}']:.3f}x"]
                  for c in (1, 64)]
    return "\n\n".join([
        "## Hardening: request limits and deadlines",
        measured_on(hardening) + f" Before: `{hardening['setup']['baseline']}`; after: this checkout; both with their defaults.",
        "Batch-1 v2 JSON requests per second (medians of interleaved rounds):",
        table(["concurrency", "req/s before", "req/s after", "after / before", "server CPU us/req before", "after", "after / before"], speed_rows),
        "Load averages (1, 5, 15 min) before and after the run: "
        + " and ".join(", ".join(f"{value:.1f}" for value in loads) for loads in hardening["setup"]["load_average_before_after"])
        + " on 2 cores: other jobs on the machine make these figures noisy. The ratio also carries every other change since "
        "the baseline (monitors on by default, per-worker statistics, one general request decoder), and two identical servers "
        "differ by about 6% in requests/s here (`benchmarks.monitor_cost`'s control).",
        *hardening_profile(hardening),
        f"Batch-1 traffic (wrk, c=1) while {hardening['setup']['senders']} clients keep sending large JSON bodies; "
        "a fresh server for each row and side, peak resident memory (VmHWM). Status 0: the connection closed before a reply "
        "could be read (a body over the limit is refused by its Content-Length and its connection closed while it is still being sent):",
        table(["large bodies", "p99 before", "p99 after", "req/s before", "req/s after", "peak RSS before", "peak RSS after",
               "large bodies answered after"], hardening_rows(results)),
    ])


def targets_section(results: Results) -> str:
    rows = target_rows(results)
    if not rows:
        return "## Speed targets\n\n" + missing("train_speed")
    return "## Speed targets\n\n" + "\n\n".join(
        [measured_on(results[s]) + f" ({s})" for s in ("train_speed", "export_speed", "serve_speed", "hardening") if s in results]
        + [table(["what", "measured", "target", "verdict"], rows)])


def monitor_cost_rows(results: Results) -> list[list[object]]:
    """Requests/s lost to each monitor at concurrency 1 and 64, against the target."""
    cost = results.get("monitor_cost", {})
    labels = {"range": "input range monitoring (on vs off)", "saturation": "saturation sampling at the default rate (on vs range alone)",
              "total": "both (defaults vs off)"}
    rows: list[list[object]] = []
    for name, value in cost.get("comparisons", {}).items():
        if name.startswith("control_difference_c"):
            rows.append([f"control: two identical monitors-off servers, c={name.rsplit('_c', 1)[1]}", f"{100 * value:.1f} %",
                         "(the resolution of the req/s rows)", ""])
            continue
        monitor, concurrency = name.rsplit("_cost_c", 1)
        met = cost["targets_met"].get(name)
        rows.append([f"{labels[monitor]}, c={concurrency} (req/s)", f"{100 * value:.1f} %", f"<= {100 * cost['target_cost']:.0f} %",
                     "" if met is None else "met" if met else "**missed**"])
    profile = cost.get("profile") or {}
    names = {"range": "input range monitoring", "saturation": "saturation sampling at the default rate"}
    for concurrency in (1, 64):
        entry = profile.get(f"c{concurrency}")
        for part, label in names.items():
            if entry and entry.get(f"{part}_share") is not None:
                met = profile["target_met"][f"{part}_c{concurrency}"]
                rows.append([f"{label}, c={concurrency}: share of the defaults server's CPU samples (py-spy, {entry['samples']} samples)",
                             f"{100 * entry[f'{part}_share']:.1f} %", f"<= {100 * cost['target_cost']:.0f} %", "met" if met else "**missed**"])
    return rows


def monitor_cost_load(results: Results) -> str:
    """How busy the machine was: on a shared machine the run-to-run noise can exceed the cost measured."""
    load = results.get("monitor_cost", {}).get("setup", {}).get("load_average_before_after")
    if not load:
        return "not measured yet"
    return (f"1-minute load average {load[0][0]:.1f} before and {load[1][0]:.1f} after, on {results['monitor_cost']['machine']['cores']} cores: "
            "a negative cost, or one that differs between c=1 and c=64 by more than the monitor's own work, is run-to-run noise")


def drift_rows(results: Results) -> list[list[object]]:
    rows: list[list[object]] = []
    for drift, points in results.get("drift", {}).get("drifts", {}).items():
        for p in points:
            rows.append([drift, p["size"], f"{p['accuracy']:.3f}", f"{p['out_of_range_fraction']:.3f}", ", ".join(f"{s:.3f}" for s in p["saturation"])])
    return rows


def monitoring_section(results: Results) -> str:
    """Cost of the monitors in lutnet serve, and the drift demonstration."""
    parts = ["## Monitoring"]
    if "monitor_cost" in results:
        medians = results["monitor_cost"]["medians"]
        rate = results["monitor_cost"]["setup"]["saturation_sample_rate_default"]
        parts += [measured_on(results["monitor_cost"]) + f" (`python -m benchmarks.monitor_cost`; {monitor_cost_load(results)})",
                  f"Batch-1 v2 JSON, digits shape, one worker; cost = 1 - req/s with the monitor / req/s without it (medians; saturation "
                  f"sampled on every {round(1 / rate)}th request by default):",
                  table(["monitor", "cost", "target", "verdict"], monitor_cost_rows(results)),
                  table(["server", "c=1 req/s (p99)", "c=64 req/s (p99)"],
                        [[name, *(f"{medians[f'{name}_c{c}']['requests_per_second']:.0f} ({medians[f'{name}_c{c}']['p99_ms']:.2f} ms)" for c in (1, 64))]
                         for name in results["monitor_cost"]["setup"]["servers"]])]
    else:
        parts.append(missing("monitor_cost"))
    if "drift" in results:
        parts += [measured_on(results["drift"]) + " (`python -m benchmarks.drift`)",
                  "The served digits model (`lutnet train --dataset digits` defaults) on its test split, drifted; accuracy from the answers, "
                  "the monitors from the model's statistics route:",
                  "![accuracy, out-of-range rows and saturation against drift](results/drift.png)",
                  table(["drift", "size d", "accuracy", "rows out of range", "saturation per LUT layer"], drift_rows(results))]
    else:
        parts.append(missing("drift"))
    return "\n\n".join(parts)


INT8_VARIANTS = ("float_relu", "float_lut", "int8_lut", "int8_relu", "ort_int8_relu")


def int8_table(results: Results) -> str:
    """Per reference model and batch: the five variants' median latency, with int8 LUT's ratios against their targets."""
    rows: list[list[object]] = []
    for family, entry in results["int8"]["families"].items():
        for batch in results["int8"]["batches"]:
            point = entry[f"batch_{batch}"]
            ratios = []
            for name in ("vs_float_relu", "vs_ort_int8_relu"):
                r = point[name]
                verdict = "" if r["target"] is None else (" (met)" if r["met"] else f" (**missed**, target <= {r['target']}x)")
                ratios.append(f"{r['ratio']:.2f}x{verdict}")
            rows.append([family, batch, *(f"{point['median_us'][v]:.0f}" for v in INT8_VARIANTS), *ratios])
    header = ["model", "batch", *(f"{v} µs" for v in INT8_VARIANTS), "int8_lut / float_relu", "int8_lut / ort_int8_relu"]
    sizes = [[family, *(f"{entry['accuracy'][v]:.4f}" for v in INT8_VARIANTS), *(f"{entry['file_kib'][v]:.0f}" for v in INT8_VARIANTS)]
             for family, entry in results["int8"]["families"].items()]
    size_header = ["model", *(f"{v} accuracy" for v in INT8_VARIANTS), *(f"{v} KiB" for v in INT8_VARIANTS)]
    return table(header, rows) + "\n\n" + table(size_header, sizes)


def int8_kernel_rows(results: Results) -> list[list[object]]:
    """Per reference model and profiled variant: microseconds per run in each operator type, largest first."""
    rows: list[list[object]] = []
    for family, entry in results["int8"]["families"].items():
        profile = entry.get("kernels_us")
        if profile is None:
            continue
        for variant in ("float_relu", "int8_lut", "ort_int8_relu"):
            ops = profile[variant]
            rows.append([family, profile["batch"], variant, f"{sum(ops.values()):.0f}", ", ".join(f"{op} {us:.0f}" for op, us in ops.items())])
    return rows


def int8_accuracy_table(results: Results) -> str:
    rows = [[r["dataset"], r["seed"], r["metric"], f"{r['float']:.4f}", f"{r['int8']:.4f}",
             f"{100 * r['change']:+.2f} points" if r["metric"] == "accuracy" else f"{100 * r['change']:+.1f} %",
             "within" if r["within_bound"] else "**outside**"] for r in results["int8_accuracy"]["runs"]]
    return table(["data set", "seed", "metric", "float", "int8", "change", "bound"], rows)


def int8_section(results: Results) -> str:
    parts = ["## int8 graphs"]
    if "int8" in results:
        parts += [measured_on(results["int8"]) + " (`python -m benchmarks.int8`)",
                  "Digits, seed 0, `lutnet train` defaults (the MLP is 64-256-256-10). onnxruntime CPU, 1 thread, medians of interleaved "
                  "rounds. `int8_relu` is lutnet's int8 export of the ReLU model (ReLU as a table); `ort_int8_relu` is "
                  "`onnxruntime.quantization.quantize_static` of the float ReLU model (per-channel QDQ), on the same calibration sample. "
                  "Accuracy is each file's on the test split.",
                  int8_table(results)]
        if int8_kernel_rows(results):
            parts += ["Where the time goes: onnxruntime's profile (µs per run in each operator type, after its graph optimizations):",
                      table(["model", "batch", "variant", "kernels µs", "by operator"], int8_kernel_rows(results))]
    else:
        parts.append(missing("int8"))
    if "int8_accuracy" in results:
        parts += [measured_on(results["int8_accuracy"]) + " (`python -m benchmarks.int8 --accuracy`)",
                  "Post-training int8 on every benchmark set: one LUT MLP per seed (`lutnet train` defaults), its float and int8 exports "
                  "scored on the test split. Bounds: at most 0.5 accuracy points lost, at most 5% RMSE added.",
                  int8_accuracy_table(results)]
    else:
        parts.append(missing("int8_accuracy"))
    return "\n\n".join(parts)


SECTIONS = (
    accuracy_section, equal_latency_section, function_fitting_section, inference_section, module_export_section, int8_section,
    training_section, serving_section, hardening_section, monitoring_section, targets_section, shapes_section, tuning_section,
)


def render_results(results: Results) -> str:
    """The whole of RESULTS.md."""
    intro = ("# lutnet benchmark results\n\nGenerated by `python -m benchmarks report` from `benchmarks/results/*.json`; "
             "rerun everything with `python -m benchmarks all`. Numbers are what the scripts measured on the machine and date shown "
             "under each table (medians over repeated runs, spread given); nothing is typed by hand.")
    return "\n\n".join([intro, *(section(results) for section in SECTIONS)]) + "\n"


def render_readme_snippet(results: Results) -> str:
    """The README's results section body: headline tables and a link to the full report."""
    seeds = len(results.get("accuracy", {}).get("settings", {}).get("seeds", []))
    parts = [
        "Reproduce with `python -m benchmarks all` (`python -m benchmarks --help` gives each suite's duration); the full tables, "
        "plots, tuning studies, machine and versions are in [benchmarks/RESULTS.md](benchmarks/RESULTS.md).",
        f"**Accuracy at equal parameter count** (test split, mean ± std over {seeds} seed{'s' * (seeds != 1)}; lutnet scored on its exported ONNX model; "
        "\"loses\"/\"wins\" against the ReLU MLP beyond the standard error):\n\n" + accuracy_headline(results),
        *equal_latency_headline(results),
        *fitting_headline(results),
        "**Inference latency** (onnxruntime CPU, digits budget, ratio to the ReLU MLP):\n\n" + inference_headline(results),
        *(["**Your own module, exported** (fused LUT / original activations, the median of per-round ratios, then the medians of each; "
           "onnxruntime, 1 thread; `python -m benchmarks.module_export`):\n\n"
            + module_export_table(results)] if "module_export" in results else []),
        *(["**int8 graphs** (digits reference models, onnxruntime, 1 thread, median µs; ratios are medians of per-round ratios; "
           "`python -m benchmarks.int8`):\n\n"
            + int8_table(results)] if "int8" in results else []),
        "**Serving** (batch-1 v2 JSON infer, one worker; req/s with p99 latency):\n\n" + serving_headline(results),
        "**Speed targets** (medians measured side by side in one run of each script):\n\n"
        + table(["what", "measured", "target", "verdict"], target_rows(results)),
        f"**Cost of monitoring** (batch-1 v2 JSON, one worker; requests/s lost; {monitor_cost_load(results)}):\n\n"
        + table(["monitor", "cost", "target", "verdict"], monitor_cost_rows(results)),
        "**Drift** (`python -m benchmarks.drift`): the served digits model on its test split, shifted or noised; the out-of-range "
        "fraction and the saturation rise before accuracy falls.\n\n![accuracy, out-of-range rows and saturation against drift](benchmarks/results/drift.png)",
    ]
    return "\n\n".join(parts)


def replace_between_markers(text: str, snippet: str) -> str:
    """``text`` with everything between the results markers replaced by ``snippet`` (markers kept)."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise LutnetError("README results markers", expected=f"{START_MARKER} followed by {END_MARKER}",
                          got="markers missing or out of order")
    return text[: start + len(START_MARKER)] + "\n" + snippet.strip() + "\n" + text[end:]


def updated_readme(path: str | os.PathLike[str], snippet: str) -> str:
    """The README's text with its results snippet replaced (nothing is written)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise LutnetError(f"README {path}", expected="a readable Markdown file", got=error.strerror or str(error)) from None
    return replace_between_markers(text, snippet)


def update_readme(path: str | os.PathLike[str], snippet: str) -> None:
    """Replace the README's results snippet in place, atomically."""
    write_text_atomic(path, updated_readme(path, snippet))


def write_report(results_dir: Path = RESULTS_DIR, out: Path = RESULTS_MD, readme: Path | None = None) -> list[Path]:
    """Plots, RESULTS.md and (with ``readme``) the README snippet; returns the files written.

    The README is checked before anything is written, so a README without markers leaves every file as it was.
    """
    results = load_results(results_dir)
    readme_text = None if readme is None else updated_readme(readme, render_readme_snippet(results))
    written = draw_plots(results, results_dir)
    write_text_atomic(out, render_results(results))
    written.append(out)
    if readme is not None:
        write_text_atomic(readme, readme_text)
        written.append(readme)
    return written
