"""The benchmarks entry point: every suite states its duration, and a bad README is one clear error with nothing written."""
from __future__ import annotations

import pytest

from benchmarks import __main__ as entry
from benchmarks.report import RESULTS_MD


def test_every_suite_states_how_long_it_takes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps (and splits words) at the terminal width
    with pytest.raises(SystemExit):
        entry.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, suite in entry.SUITES.items():
        assert f"{name} {entry.SUITE_HELP[name]} (~{suite.minutes} min on 2 cores; --quick ~{suite.quick_minutes} min)" in text
    assert f"~{sum(s.minutes for s in entry.SUITES.values())} min on 2 cores" in text
    assert sum(s.minutes for s in entry.SUITES.values()) <= 90  # what README.md states for make bench


def test_report_with_a_readme_lacking_markers_fails_cleanly(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    before = RESULTS_MD.stat().st_mtime_ns if RESULTS_MD.exists() else None
    assert entry.main(["report", "--readme", str(readme)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m benchmarks report: error: README results markers") and "Traceback" not in error
    assert readme.read_text() == "# no markers here\n"
    assert (RESULTS_MD.stat().st_mtime_ns if RESULTS_MD.exists() else None) == before
