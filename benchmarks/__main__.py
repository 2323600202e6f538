"""One entry point for the evidence: ``python -m benchmarks all|accuracy|inference|training|serving|shapes|fitting|report [--quick]``.

Each suite writes ``benchmarks/results/<suite>.json``; ``report`` renders ``benchmarks/RESULTS.md`` (and, with
``--readme``, the README's results section) from them. ``all`` runs every suite, then the report: about an hour and a
half on 2 cores (``--quick``: about 10 minutes, for smoke runs). Peers' environments are built on first use
(``python -m benchmarks.peers.setup``, about 4 minutes once).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lutnet.errors import LutnetError


@dataclass(frozen=True)
class Suite:
    """A suite's module (its ``main(argv) -> int``) and how long it takes on 2 cores."""

    module: str
    minutes: int
    quick_minutes: int

    def run(self, quick: bool) -> int:
        import importlib

        main: Callable[[list[str]], int] = importlib.import_module(f"benchmarks.{self.module}").main
        return main(["--quick"] if quick else [])


SUITES = {
    "accuracy": Suite("accuracy", 30, 3),
    "inference": Suite("inference", 2, 1),
    "training": Suite("training_cost", 4, 2),
    "serving": Suite("serving", 6, 3),
    "shapes": Suite("shapes", 5, 2),
    "fitting": Suite("function_fitting", 40, 2),
}
SUITE_HELP = {
    "accuracy": "suite 1: test accuracy at equal parameter count, lutnet (ONNX-scored) vs ReLU/GELU MLPs and peers, 5 seeds",
    "inference": "suite 2: onnxruntime CPU latency at batch 1/32/1024, 1 and 2 threads, ratios to ReLU, node counts",
    "training": "suite 3: seconds per training epoch on digits and MNIST-5k, ratios to ReLU",
    "serving": "suite 4: lutnet serve vs bare FastAPI, KServe and BentoML at concurrency 1/8/64 (needs wrk)",
    "shapes": "suite 5: lutnet plot of the digits and MNIST-5k models with measured distances from init and bends",
    "fitting": "suite 6: function fitting (Friedman, Feynman formulas) at equal parameters, LUT vs ReLU/GELU MLPs and peers, 5 seeds",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="SUITE")
    full = sum(s.minutes for s in SUITES.values())
    quick = sum(s.quick_minutes for s in SUITES.values())
    every = commands.add_parser("all", help=f"every suite, then the report (~{full} min on 2 cores; --quick ~{quick} min)")
    every.add_argument("--quick", action="store_true", help="smoke-sized runs of every suite")
    every.add_argument("--readme", type=Path, help="also replace the results section of this README")
    for name, suite in SUITES.items():
        sub = commands.add_parser(name, help=f"{SUITE_HELP[name]} (~{suite.minutes} min on 2 cores; --quick ~{suite.quick_minutes} min)")
        sub.add_argument("--quick", action="store_true", help=f"smoke-sized run (~{suite.quick_minutes} min)")
    report = commands.add_parser("report", help="render benchmarks/RESULTS.md and PNG plots from benchmarks/results/*.json (seconds)")
    report.add_argument("--readme", type=Path, help="also replace the text between the results markers of this README")
    return p


def run_report(readme: Path | None) -> int:
    from benchmarks.report import write_report

    for path in write_report(readme=readme):
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "report":
            return run_report(args.readme)
        names = list(SUITES) if args.command == "all" else [args.command]
        failed = [name for name in names if SUITES[name].run(args.quick) != 0]
        if args.command == "all":
            run_report(args.readme)
    except LutnetError as error:
        print(f"python -m benchmarks {args.command}: error: {error}", file=sys.stderr)
        return 2
    if failed:
        print(f"python -m benchmarks {args.command}: failed suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
