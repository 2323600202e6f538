"""``lutnet plot``: a readable PNG of every learned activation, and clear errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lutnet import cli
from lutnet.checkpoint import read_checkpoint, write_checkpoint
from lutnet.lut import activation_function, linear_interpolation_bound
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.training.models import build_model, checkpoint_from_model
from lutnet.training.plot import activation_curves, channels_to_show, checkpoint_layers, panel_title, render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def checkpoint_dir(tmp_path: Path, activation: str = "lut", shared: bool = False, hidden: tuple[int, ...] = (12, 5)) -> Path:
    spec = ModelSpec(family="mlp", input_shape=(4,), num_outputs=3, hidden=hidden, activation=activation,
                     lut=LUTSpec(bins=16, init="gelu", shared=shared))
    directory = tmp_path / f"{activation}-{shared}"
    write_checkpoint(checkpoint_from_model(build_model(spec), labels=["a", "b", "c"]), directory)
    return directory


@pytest.mark.parametrize("shared", [False, True])
def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str], shared: bool) -> None:
    out = tmp_path / "plots" / "acts.png"
    assert cli.main(["plot", str(checkpoint_dir(tmp_path, shared=shared)), "--out", str(out), "--max-channels", "4"]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert f"wrote {out}" in capsys.readouterr().out


def test_channel_cap_spreads_panels_over_all_channels() -> None:
    assert channels_to_show(5, 8).tolist() == [0, 1, 2, 3, 4]
    shown = channels_to_show(256, 64)
    assert len(shown) == 64 and shown[0] == 0 and shown[-1] == 255 and np.all(np.diff(shown) > 0)


def test_curves_are_the_checkpoint_function_and_its_init(tmp_path: Path) -> None:
    """A fresh model's curve equals its init function inside the range (within interpolation error)."""
    checkpoint = read_checkpoint(checkpoint_dir(tmp_path))
    x, learned, initial = activation_curves(checkpoint_layers(checkpoint)[1], 2)
    lo, hi = checkpoint.tensors["act.1.lo"][2], checkpoint.tensors["act.1.hi"][2]
    inside = (x >= lo) & (x <= hi)
    assert x[0] < lo and x[-1] > hi and inside.sum() > 100
    np.testing.assert_allclose(learned[inside], initial[inside], atol=float(linear_interpolation_bound(np.array([lo]), np.array([hi]), 16, 0.8)[0]))
    np.testing.assert_allclose(initial, activation_function("gelu")(x))


def test_panels_are_titled_by_row_number_or_by_the_layers_own_labels(tmp_path: Path) -> None:
    layer = checkpoint_layers(read_checkpoint(checkpoint_dir(tmp_path)))[1]
    assert [panel_title(layer, row) for row in (0, 4)] == ["c0", "c4"]
    labelled = dataclasses.replace(layer, labels=tuple(f"x{row}" for row in range(5)))
    assert [panel_title(labelled, row) for row in (0, 4)] == ["x0", "x4"]
    assert render([labelled], 8, "labelled").startswith(PNG_SIGNATURE)


def test_plot_of_a_baseline_or_missing_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    assert cli.main(["plot", str(checkpoint_dir(tmp_path, activation="relu")), "--out", str(out)]) == 2
    assert "expected lut (learned tables), got relu, which has nothing learned to plot" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("arguments,message", [
    (["--out", "x.jpg"], "expected a .png file name"),
    (["--out", "x.png", "--max-channels", "0"], "expected an integer >= 1"),
])
def test_invalid_plot_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plot", str(checkpoint_dir(tmp_path)), *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
