"""The report renderer: tables from small fake results files, verdicts against ReLU, plots, and the README markers."""
from __future__ import annotations

import json

import pytest

from benchmarks import report
from lutnet.errors import LutnetError

MACHINE = {"date": "2026-01-01T00:00:00+00:00", "cpu": "Test CPU", "cores": 2, "python": "3.11"}


def summary(dataset, model, mean, std, metric="accuracy", seeds=5, hidden=(10, 10)):
    return {"dataset": dataset, "task": "regression" if metric == "rmse" else "classification", "metric": metric, "model": model,
            "seeds": seeds, "mean": mean, "std": std, "params": 1000.0, "hidden": list(hidden), "minus_relu": None}


def fake_results():
    accuracy = {"suite": "accuracy", "machine": MACHINE,
                "settings": {"seeds": [0, 1, 2, 3, 4], "budgets": {"digits": 1000, "diabetes": 1000}, "parameter_count": "weights and tables"},
                "summary": [summary("digits", "lut_linear", 0.9111, 0.001), summary("digits", "relu", 0.9555, 0.001),
                            summary("diabetes", "lut_linear", 50.25, 0.1, "rmse"), summary("diabetes", "relu", 60.75, 0.1, "rmse")]}
    peers = {"suite": "accuracy_peers", "machine": MACHINE, "summary": [summary("digits", "pykan", 0.9556, 0.01)]}
    timing = lambda seconds: {"median": seconds, "p10": seconds, "p90": seconds, "n": 10}  # noqa: E731
    inference = {"suite": "inference", "machine": MACHINE, "settings": {"dataset": "digits", "budget": 1000, "threads": [1]},
                 "graphs": {"relu": {"nodes": 6}, "lut_linear": {"nodes": 16}},
                 "runs": [{"batch": b, "threads": 1, "timings_s": {"relu": timing(b * 1e-6), "lut_linear": timing(b * 3e-6)},
                           "ratio_to_relu": {"relu": 1.0, "lut_linear": 3.0}} for b in (1, 1024)]}
    load = lambda rps: {"requests_per_second": rps, "p50_ms": 0.5, "p95_ms": 0.9, "p99_ms": 1.5, "errors": 0}  # noqa: E731
    serve_speed = {"suite": "serve_speed", "machine": MACHINE, "medians": {"v2_json_b1_c1": load(7777.0), "bare_c1": load(9999.0)}}
    serving_peers = {"suite": "serving_peers", "machine": MACHINE, "serving": [{"peer": "kserve", "c1": load(1111.0)}]}
    return {"accuracy": accuracy, "accuracy_peers": peers, "inference": inference, "serve_speed": serve_speed, "serving_peers": serving_peers}


def write_fake(folder):
    for suite, content in fake_results().items():
        (folder / f"{suite}.json").write_text(json.dumps(content))


def test_accuracy_tables_carry_every_number_and_say_where_lutnet_loses():
    text = report.render_results(fake_results())
    assert "0.9111 ± 0.0010" in text and "0.9555 ± 0.0010" in text
    digits = text.split("### digits")[1].split("###")[0]
    assert "| lut_linear | 0.9111 ± 0.0010 | 1000 | 10x10 | -0.0444 | **loses** |" in digits
    assert "| pykan | 0.9556 ± 0.0100 | 1000 | 10x10 | +0.0001 | tie (within noise) |" in digits  # from accuracy_peers.json
    diabetes = text.split("### diabetes")[1].split("##")[0]
    assert "lower is better" in diabetes and "**wins**" in diabetes  # a lower RMSE wins


def test_accuracy_rows_merged_under_changed_trainer_defaults_are_named():
    results = fake_results()
    results["accuracy"]["settings"]["merges"] = [
        {"models": ["pykan"], "datasets": ["digits"], "seeds": [0]},
        {"models": ["lut_linear", "relu"], "datasets": ["digits"], "seeds": [0, 1], "trainer_defaults_changed": {"std_floor": 0.5}}]
    text = report.render_results(results)
    assert "Rows of lut_linear, relu on digits (seeds [0, 1]) were measured again with `--merge` under the changed trainer defaults " \
           '`{"std_floor": 0.5}`; the other rows keep the defaults they were measured with.' in text
    assert "Rows of pykan" not in text


def test_the_newest_accuracy_file_wins_for_a_model_measured_twice():
    results = fake_results()
    results["accuracy_old"] = {"machine": {**MACHINE, "date": "2025-01-01T00:00:00+00:00"}, "summary": [summary("digits", "relu", 0.1234, 0.0)]}
    assert report.accuracy_entries(results)["digits"]["relu"]["mean"] == 0.9555
    results["accuracy_old"]["machine"]["date"] = "2027-01-01T00:00:00+00:00"
    assert report.accuracy_entries(results)["digits"]["relu"]["mean"] == 0.1234


def test_single_seed_verdicts_say_there_is_no_spread():
    entry, relu = summary("d", "lut_linear", 0.5, 0.0, seeds=1), summary("d", "relu", 0.6, 0.0, seeds=1)
    assert report.verdict(entry, relu) == "**loses** (1 seed, no spread)"


def test_missing_suites_are_named_with_the_command_that_measures_them():
    text = report.render_results({})
    for command in ("python -m benchmarks accuracy", "python -m benchmarks inference", "python -m benchmarks training",
                    "python -m benchmarks serving", "python -m benchmarks shapes"):
        assert command in text


def test_inference_and_serving_numbers_come_from_the_files():
    text = report.render_results(fake_results())
    assert "| lut_linear | 16 | 3 us (3.00x) | 3.07 ms (3.00x) |" in text
    assert "| lutnet serve (defaults: --execution auto --batching) | 1 | 7777 | 0.50 | 0.90 | 1.50 |" in text and "| kserve | 1 | 1111 |" in text
    assert "| 1 | 7.00x | met |" in text  # lutnet / KServe req/s against the 3x target


def test_batch_256_json_and_binary_rates_are_tabled_for_lutnet_the_lean_endpoint_and_the_relu_model():
    results = fake_results()
    medians = results["serve_speed"]["medians"]
    rates = (("v2_json_b256_c1", 500.0), ("v2_binary_b256_c1", 850.0), ("lean_json_b256_c1", 520.0), ("lean_binary_b256_c1", 1000.0),
             ("relu_json_b256_c1", 700.0), ("relu_binary_b256_c1", 1540.0))
    for name, rps in rates:
        medians[name] = {"requests_per_second": rps, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0}
    text = report.serving_section(results)
    assert "| lutnet serve (defaults) | 500 | 850 | 1.70x |" in text and "| lean FastAPI + orjson + onnxruntime | 520 | 1000 | 1.92x |" in text
    assert "| lutnet serve, same shape with ReLU | 700 | 1540 | 2.20x |" in text


def test_serving_ratios_across_two_runs_are_flagged():
    results = fake_results()
    assert "different times" not in report.serving_section(results)
    results["serving_peers"]["machine"] = {**MACHINE, "date": "2026-01-01T05:00:00+00:00"}
    assert "**These ratios compare two runs made at different times (dates above)**" in report.serving_section(results)
    assert "**lutnet and the peers were measured in different runs**" in report.serving_headline(results)


def test_duration_picks_a_readable_unit():
    assert [report.duration(s) for s in (4.7e-6, 219e-6, 6.9e-3, 1.2)] == ["4.7 us", "219 us", "6.9 ms", "1.2 s"]


def test_write_report_renders_markdown_plots_and_readme(tmp_path):
    write_fake(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n\n## Results\n{report.START_MARKER}\nold text\n{report.END_MARKER}\n\n## After\n")
    written = report.write_report(tmp_path, tmp_path / "RESULTS.md", readme)
    assert {p.name for p in written} == {"accuracy.png", "inference.png", "RESULTS.md", "README.md"}
    assert all(p.stat().st_size > 0 for p in written)
    updated = readme.read_text()
    assert "old text" not in updated and updated.endswith("## After\n") and updated.startswith("# project\n")
    assert "0.9111 ± 0.0010 (loses)" in updated and "over 5 seeds" in updated
    assert "| lutnet serve (defaults: --execution auto --batching) | 7777 (1.50 ms) |  |  |" in updated
    assert "| lutnet / KServe (target >= 3x) | 7.00x (met) |" in updated


def test_markers_replacement_keeps_the_markers_and_is_idempotent():
    text = f"a\n{report.START_MARKER}\nx\n{report.END_MARKER}\nb\n"
    once = report.replace_between_markers(text, "new")
    assert once == f"a\n{report.START_MARKER}\nnew\n{report.END_MARKER}\nb\n"
    assert report.replace_between_markers(once, "new") == once


@pytest.mark.parametrize("text", ["no markers", f"{report.END_MARKER} then {report.START_MARKER}"])
def test_readme_without_markers_is_an_error_and_stays_untouched(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(LutnetError, match="results markers"):
        report.update_readme(readme, "snippet")
    assert readme.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_unreadable_results_file_is_named(tmp_path):
    (tmp_path / "accuracy.json").write_text("{not json")
    with pytest.raises(LutnetError, match="accuracy.json"):
        report.load_results(tmp_path)


def test_speed_targets_come_from_the_measurements_with_their_verdicts():
    from benchmarks.report import target_rows

    results = {
        "train_speed": {"chosen": {"ratio": "lut/relu", "batch_size": 64, "lookup": "native", "wall": 1.25, "cpu": 1.3}, "target": {"lut/relu": 1.3}},
        "export_speed": {"targets": [{"lookup": "linear_clamp", "batch": 1024, "ratio": 2.5, "target": 2.0, "met": False}]},
        "serve_speed": {"comparisons": {"p99_c64_ms": 4.0, "other": 1.0}, "targets": {"p99_c64_ms": 10.0}, "targets_met": {"p99_c64_ms": True}},
    }
    rows = target_rows(results)
    assert rows[0][1:] == ["1.25x", "<= 1.3x", "met"]
    assert rows[1][0].startswith("fused linear (extrapolate clamp)") and rows[1][1:] == ["2.50x", "<= 2.0x", "**missed**"]
    assert rows[2][1:] == ["4.0 ms", "<= 10.0 ms", "met"] and len(rows) == 3


def test_hardening_before_and_after_come_from_the_file_with_the_cost_target():
    load = lambda rps, cpu, p99: {"requests_per_second": rps, "server_cpu_us_per_request": cpu, "p99_ms": p99}  # noqa: E731
    speed = {f"{side}_c{c}": load(rps, 100.0, 1.0) for side, rps in (("before", 1000.0), ("after", 950.0)) for c in (1, 64)}
    ratios = {f"after_vs_before_c{c}": 0.95 for c in (1, 64)} | {f"cpu_per_request_after_vs_before_c{c}": 1.0 for c in (1, 64)}
    large = {"before_60MB": {"batch1": load(30.0, 0.0, 1860.0), "peak_rss_mb": 731.0, "large_body_answers": {"400": 9}},
             "after_60MB": {"batch1": load(450.0, 0.0, 33.0), "peak_rss_mb": 107.0, "large_body_answers": {"413": 80}}}
    hardening = {"suite": "hardening", "machine": MACHINE, "setup": {"baseline": "abc123", "senders": 8, "load_average_before_after": [[1, 1, 1]] * 2},
                 "speed": {"medians": speed, "ratios": ratios}, "large_bodies": large}
    text = report.render_results({"hardening": hardening})
    assert "| c=1 | 1000 | 950 | 0.950x | 100.0 | 100.0 | 1.000x |" in text
    assert "| 60MB | 1860.00 ms | 33.00 ms | 30 | 450 | 731 MB | 107 MB | 413: 80 |" in text
    assert "| hardening cost: req/s after vs before c64 | 0.950x | >= 0.97x | **missed** |" in text


def test_a_profiled_hardening_run_judges_the_cost_by_the_share_of_cpu_samples():
    """With a py-spy profile, the targets table takes the in-process share; the req/s ratio only stays in its section."""
    load = lambda rps: {"requests_per_second": rps, "server_cpu_us_per_request": 100.0, "p99_ms": 1.0}  # noqa: E731
    speed = {f"{side}_c{c}": load(rps) for side, rps in (("before", 1000.0), ("after", 930.0)) for c in (1, 64)}
    ratios = {f"after_vs_before_c{c}": 0.93 for c in (1, 64)} | {f"cpu_per_request_after_vs_before_c{c}": 1.0 for c in (1, 64)}
    profile = {"c1": {"samples": 4000, "hardening_samples": 40, "hardening_share": 0.01},
               "c64": {"samples": 5000, "hardening_samples": 200, "hardening_share": 0.04},
               "target_share": 0.03, "target_met": {"c1": True, "c64": False}}
    hardening = {"suite": "hardening", "machine": MACHINE, "setup": {"baseline": "abc123", "senders": 8, "load_average_before_after": [[1, 1, 1]] * 2},
                 "speed": {"medians": speed, "ratios": ratios}, "profile": profile, "large_bodies": {}}
    text = report.render_results({"hardening": hardening})
    assert "| hardening cost: share of the server's CPU samples, c=1 (py-spy) | 1.0 % | <= 3 % | met |" in text
    assert "| hardening cost: share of the server's CPU samples, c=64 (py-spy) | 4.0 % | <= 3 % | **missed** |" in text
    assert "| c=64 | 5000 | 200 | 4.00 % |" in text
    assert "hardening cost: req/s" not in text and "| c=1 | 1000 | 930 | 0.930x |" in text


def test_hardening_samples_are_those_in_its_frames_outside_the_servers_own_read():
    from benchmarks.hardening import is_hardening

    root = "Runner.run (asyncio/runners.py:118);InferenceRoutes.answer (service/fastpath.py:120)"
    read = root + ";InferenceRoutes._read_body (service/fastpath.py:134)"
    deadline = read + ";BodyDeadlines.receive (service/fastpath.py:70)"
    assert is_hardening(read) and is_hardening(deadline) and is_hardening(deadline + ";current_task (asyncio/tasks.py:39)")
    assert not is_hardening(deadline + ";RequestResponseCycle.receive (uvicorn/protocols/http/httptools_impl.py:579)")  # the server's own read
    assert not is_hardening(root + ";InferenceRoutes._infer (service/fastpath.py:152)")
    assert not is_hardening(root + ";BodyDeadlines.receive (service/dataplane.py:10)")
    assert is_hardening("Runner.run (asyncio/runners.py:118);BodyDeadlines.sweep (service/fastpath.py:82)")


def test_function_fitting_counts_wins_over_relu_and_gelu_and_the_median_ratio():
    """A task counts when lut_linear beats both baselines beyond the standard error; the ratio is to the ReLU MLP's mean."""
    rows = [summary("f1", "lut_linear", 0.05, 0.001, "relative_rmse"), summary("f1", "relu", 0.10, 0.001, "relative_rmse"),
            summary("f1", "gelu", 0.08, 0.001, "relative_rmse"),
            summary("f2", "lut_linear", 0.09, 0.001, "relative_rmse"), summary("f2", "relu", 0.10, 0.001, "relative_rmse"),
            summary("f2", "gelu", 0.07, 0.001, "relative_rmse"),  # GELU wins here: no count
            summary("f3", "lut_linear", 0.0995, 0.01, "relative_rmse"), summary("f3", "relu", 0.10, 0.01, "relative_rmse"),
            summary("f3", "gelu", 0.20, 0.01, "relative_rmse")]  # within noise of ReLU: no count
    result = {"suite": "function_fitting", "machine": MACHINE, "settings": {"seeds": [0, 1, 2, 3, 4], "budgets": {}}, "summary": rows}
    text = report.render_results({"function_fitting": result})
    assert "on **1 of 3** tasks" in text and "is **0.900**" in text  # median of 0.5, 0.9, 0.995
    assert "0.0500 ± 0.0010 (wins)" in text and "0.0995 ± 0.0100 (tie (within noise))" in text
    assert "**Function fitting at equal parameter count**" in report.render_readme_snippet({"function_fitting": result})


def test_function_fitting_tables_the_peers_with_verdicts_their_budget_and_the_plots():
    """Peers get columns with their verdict against ReLU, a tally of lut_linear against each, and how their time cap bound."""
    rows = [summary("f1", "lut_linear", 0.05, 0.001, "relative_rmse"), summary("f1", "relu", 0.10, 0.001, "relative_rmse"),
            summary("f1", "gelu", 0.08, 0.001, "relative_rmse"), summary("f1", "pykan", 0.04, 0.001, "relative_rmse"),
            summary("f1", "inkan", 0.0502, 0.01, "relative_rmse"),
            summary("f2", "lut_linear", 0.09, 0.001, "relative_rmse"), summary("f2", "relu", 0.10, 0.001, "relative_rmse"),
            summary("f2", "pykan", 0.12, 0.001, "relative_rmse")]
    peer_run = lambda model, epochs, best: {"dataset": "f1", "model": model, "epochs": epochs, "best_epoch": best}  # noqa: E731
    settings = {"seeds": [0, 1, 2, 3, 4], "budgets": {}, "trainer_defaults": {"epochs": 40, "patience": 10}, "peer_epochs": 60,
                "peer_seconds_cap": {"f1": 12.0, "f2": 12.0},
                "merges": [{"models": ["pykan", "inkan"], "seeds": [0, 1, 2, 3, 4], "onto_machine": {"date": "2025-05-05"}}]}
    result = {"suite": "function_fitting", "machine": MACHINE, "settings": settings, "summary": rows,
              "runs": [peer_run("pykan", 60, 41), peer_run("pykan", 20, 20), peer_run("inkan", 30, 12), {"dataset": "f1", "model": "relu", "epochs": 3}]}
    plots = {"suite": "fitting_plots", "machine": MACHINE, "model": "lut_linear", "seed": 0,
             "plots": {"f1": {"png": "fitting_f1.png", "formula": "f1: y = sin(x)", "hidden": [36, 36], "test_relative_rmse": 0.0421,
                              "table_movement": [0.25, 1.5]}}}
    text = report.render_results({"function_fitting": result, "fitting_plots": plots})
    assert "| task | lut_linear | relu | gelu | pykan | inkan |" in text
    assert "0.0400 ± 0.0010 (wins)" in text and "0.1200 ± 0.0010 (loses)" in text  # the peers' own verdicts against ReLU
    assert "wins on **1**, ties on 0 and loses on 1 of 2 tasks against pykan" in text
    assert "wins on **0**, ties on 1 and loses on 0 of 1 tasks against inkan" in text
    assert "at most 60 epochs or 12 s of training, whichever comes first. Runs the time cap ended early: pykan 1 of 2 (1 of them at an " \
           "epoch that was still their best; median 40 epochs); inkan 1 of 1 (0 of them" in text
    assert "added with `--merge` to results measured 2025-05-05" in text
    assert "`f1: y = sin(x)`: hidden 36x36, test RMSE / std 0.042, tables moved 0.250, 1.500 from init" in text
    assert "![learned activations of f1](results/fitting_f1.png)" in text
    snippet = report.render_readme_snippet({"function_fitting": result, "fitting_plots": plots})
    assert "against pykan" in snippet and "[f1](benchmarks/results/fitting_f1.png)" in snippet
    assert "not drawn yet" in report.render_results({"function_fitting": result})


def test_module_export_latency_is_tabled_with_its_targets():
    run = lambda fused, original, met: {"median_us": {"fused": fused, "unfolded": fused * 1.1, "original": original},  # noqa: E731
                                        "fused_vs_original": fused / original, "unfolded_vs_fused": 1.1, "met": met}
    result = {"suite": "module_export", "machine": MACHINE, "batches": [1, 256], "targets": {"1": 1.5, "256": 2.0},
              "examples": {"mlp": {"batch_1": run(30.0, 20.0, True), "batch_256": run(500.0, 200.0, False)}}}
    text = report.render_results({"module_export": result})
    assert "| mlp | 1.50x (met; 30.0 us, 20.0 us) | 2.50x (**missed**; 500.0 us, 200.0 us) | 1.10x / 1.10x |" in text
    assert "batch 256 (target <= 2.0x)" in report.render_readme_snippet({"module_export": result})


def equal_latency_result():
    def entry(dataset, model, mean, std, seconds, ratio, hidden, metric="accuracy"):
        return {**summary(dataset, model, mean, std, metric, hidden=hidden),
                "latency_s": {"batch_1": {"median": seconds, "ratio_to_relu": ratio}, "batch_256": {"median": 100 * seconds, "ratio_to_relu": ratio}}}
    search = lambda searched, reference, widths: {"searched": searched, "reference": reference, "widths": widths,  # noqa: E731
                                                 "probes": {searched: [{"width": 7, "over_reference": 0.5}, {"width": 300, "over_reference": 1.01}]}}
    return {"suite": "equal_latency", "machine": MACHINE, "load_average_before_after": [[1.5, 1, 1], [2.5, 1, 1]],
            "settings": {"seeds": [0, 1, 2], "tolerance": 0.05, "batches": [1, 256]},
            "searches": {"digits": search("relu", "lut_linear", {"lut_linear": 10, "relu": 300}),
                         "diabetes": search("relu", "lut_linear", {"lut_linear": 10, "relu": 300})},
            "summary": [entry("digits", "lut_linear", 0.95, 0.001, 2e-5, 1.01, (10, 10)),
                        entry("digits", "lut_linear_to_nearest", 0.9499, 0.001, 2.1e-5, 1.05, (10, 10)),
                        entry("digits", "relu", 0.97, 0.001, 2e-5, 1.0, (300, 300)),
                        entry("diabetes", "lut_linear", 50.0, 5.0, 2e-5, 0.93, (10, 10), "rmse"),
                        entry("diabetes", "relu", 52.0, 5.0, 2e-5, 1.0, (300, 300), "rmse")]}


def test_equal_latency_tables_show_widths_latencies_and_where_lutnet_loses():
    results = {"equal_latency": equal_latency_result()}
    text = report.render_results(results)
    assert "on **1 of 2** sets (target: every set; **missed**)" in text
    assert ("| digits (accuracy) | relu matched to lut_linear | 10x10 / 300x300 | 1000 / 1000 | 1.01x | 0.9500 ± 0.0010 | 0.9700 ± 0.0010 | loses "
            "| 0.9499 ± 0.0010, 21 us (1.05x) |") in text
    assert "| 0.93x (**outside**) |" in text and "within 5% of each other on **1 of 2** sets" in text
    assert "| diabetes (rmse) |" in text and "tie (within noise)" in text.split("| diabetes (rmse) |")[1].split("\n")[0]
    digits = text.split("### digits (test accuracy)")[1].split("###")[0]
    assert "latency over the reference by width: 7: 0.50x, 300: 1.01x" in digits
    assert "| lut_linear_to_nearest | 10x10 | 1000 | 0.9499 ± 0.0010 | 21 us (1.05x) | 2.1 ms (1.05x) | -0.0201 | **loses** |" in digits
    assert "load average 1.5 and 2.5" in text
    assert "at or above the ReLU MLP (test metric, within the standard error) | 1 of 2 sets | every set | **missed** |" in text
    assert "**Accuracy at equal inference latency**" in report.render_readme_snippet(results)
    assert "Accuracy at equal inference latency" not in report.render_readme_snippet({}) and "benchmarks.equal_latency" in report.render_results({})


def test_convnet_results_join_the_accuracy_tables_with_their_own_budget():
    results = fake_results()
    results["accuracy_convnet"] = {"suite": "accuracy_convnet", "machine": MACHINE, "settings": {"budgets": {"mnist5k_convnet": 777}},
                                   "summary": [summary("mnist5k_convnet", "lut_linear", 0.99, 0.001), summary("mnist5k_convnet", "relu", 0.98, 0.001)]}
    text = report.render_results(results)
    assert "### mnist5k_convnet (budget 777 parameters, test accuracy, higher is better)" in text
    assert "| lut_linear | 0.9900 ± 0.0010 | 1000 | 10x10 | +0.0100 | **wins** |" in text.split("### mnist5k_convnet")[1]
    assert "0.9900 ± 0.0010 (wins)" in report.render_readme_snippet(results)


def test_equal_latency_names_the_sessions_timed_per_graph():
    result = equal_latency_result()
    assert "sessions of each graph" not in report.render_results({"equal_latency": result})
    result["settings"]["sessions_per_graph"] = 3
    assert "the median over 3 sessions of each graph" in report.render_results({"equal_latency": result})


def test_int8_latency_accuracy_and_sizes_come_from_the_files_with_their_verdicts():
    point = lambda scale, met: {"median_us": {v: scale * (i + 1) for i, v in enumerate(report.INT8_VARIANTS)},  # noqa: E731
                                "vs_float_relu": {"ratio": 0.81, "target": 1.0, "met": met},
                                "vs_ort_int8_relu": {"ratio": 1.73, "target": 1.0, "met": False}}
    family = {"accuracy": {v: 0.97 for v in report.INT8_VARIANTS}, "file_kib": {v: 100.0 + i for i, v in enumerate(report.INT8_VARIANTS)},
              "batch_32": point(10.0, True), "batch_1024": point(1000.0, False),
              "kernels_us": {"batch": 1024, "float_relu": {"Gemm": 900.0}, "int8_lut": {"GatherElements": 600.0, "QLinearMatMul": 500.0},
                             "ort_int8_relu": {"QLinearMatMul": 700.0}}}
    results = {"int8": {"suite": "int8", "machine": MACHINE, "batches": [32, 1024], "families": {"mlp": family}},
               "int8_accuracy": {"suite": "int8_accuracy", "machine": MACHINE, "runs": [
                   {"dataset": "digits", "seed": 0, "metric": "accuracy", "float": 0.97, "int8": 0.96, "change": -0.01, "within_bound": False},
                   {"dataset": "diabetes", "seed": 0, "metric": "rmse", "float": 55.0, "int8": 55.5, "change": 0.009, "within_bound": True}]}}
    text = report.int8_section(results)
    assert "| mlp | 32 | 10 | 20 | 30 | 40 | 50 | 0.81x (met) | 1.73x (**missed**, target <= 1.0x) |" in text
    assert "| mlp | 1024 | 1000 |" in text and "0.81x (**missed**, target <= 1.0x)" in text
    assert "| mlp | 0.9700 | 0.9700 | 0.9700 | 0.9700 | 0.9700 | 100 | 101 | 102 | 103 | 104 |" in text
    assert "| digits | 0 | accuracy | 0.9700 | 0.9600 | -1.00 points | **outside** |" in text
    assert "| diabetes | 0 | rmse | 55.0000 | 55.5000 | +0.9 % | within |" in text
    assert "| mlp | 1024 | int8_lut | 1100 | GatherElements 600, QLinearMatMul 500 |" in text
    assert "python -m benchmarks.int8" in report.int8_section({}) and "Not measured yet" in report.int8_section({})


def test_monitor_cost_rows_carry_the_control_and_the_profiled_shares():
    entry = lambda samples, r, s: {"samples": samples, "range_share": r, "saturation_share": s}  # noqa: E731
    cost = {"comparisons": {"range_cost_c1": 0.041, "control_difference_c1": -0.02}, "target_cost": 0.03,
            "targets_met": {"range_cost_c1": False},
            "profile": {"c1": entry(3000, 0.025, 0.004), "c64": entry(3100, 0.04, 0.01),
                        "target_met": {"range_c1": True, "saturation_c1": True, "range_c64": False, "saturation_c64": True}}}
    rows = report.monitor_cost_rows({"monitor_cost": cost})
    assert ["input range monitoring (on vs off), c=1 (req/s)", "4.1 %", "<= 3 %", "**missed**"] in rows
    assert ["control: two identical monitors-off servers, c=1", "-2.0 %", "(the resolution of the req/s rows)", ""] in rows
    profiled = {row[0].split(":")[0]: row[1:] for row in rows if "py-spy" in row[0]}
    assert profiled == {"input range monitoring, c=1": ["2.5 %", "<= 3 %", "met"], "saturation sampling at the default rate, c=1": ["0.4 %", "<= 3 %", "met"],
                        "input range monitoring, c=64": ["4.0 %", "<= 3 %", "**missed**"],
                        "saturation sampling at the default rate, c=64": ["1.0 %", "<= 3 %", "met"]}
