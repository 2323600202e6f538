"""The distribution: one top-level name when installed, and the dependency rule checked on that installed tree."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"lutnet.training": "training", "lutnet.export": "export", "lutnet.service": "service"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, unpacked as pip would lay it into site-packages."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy, so that no stale build/ folder of the checkout leaks into the wheel
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("lutnet", *SUBPACKAGES.values()):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, cwd=out,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (out / "dist").glob("lutnet-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.mark.slow
def test_wheel_installs_one_top_level_package(installed: Path) -> None:
    top = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")}
    assert top == {"lutnet"}
    for package, folder in SUBPACKAGES.items():
        shipped = {p.name for p in (installed / package.replace(".", "/")).glob("*.py")}
        assert shipped == {p.name for p in (ROOT / folder).glob("*.py")}, package
    assert {"lut_kernel.c", "lut_op.cpp"} <= {p.name for p in (installed / "lutnet" / "training").iterdir()}


@pytest.mark.slow
def test_import_contracts_hold_on_the_installed_tree(installed: Path) -> None:
    """lint-imports sees the installed layout, where lutnet.training etc. are real subpackages of lutnet."""
    shutil.copy(ROOT / "pyproject.toml", installed / "pyproject.toml")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", "pyproject.toml", "--no-cache"], capture_output=True, text=True, cwd=installed, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "4 kept" in result.stdout


def test_core_contract_names_every_core_module() -> None:
    """A new module in lutnet/ is covered by the core contract (import-linter cannot exclude subpackages itself)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["source_modules"][0].startswith("lutnet.") and "lutnet.training" in c["forbidden_modules"])
    assert set(core["source_modules"]) == {f"lutnet.{p.stem}" for p in (ROOT / "lutnet").glob("*.py") if p.stem != "__init__"}

