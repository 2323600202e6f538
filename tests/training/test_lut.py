"""LUTActivation: gradients, initialization, calibration, equality with the numpy reference, and the native kernel."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lutnet.lut import activation_function, linear_interpolation_bound, lut_forward, resample_table, second_difference_l1
import lutnet.training.lut
from lutnet.training import native
from lutnet.training.lut import LUTActivation

MODES = ("linear", "nearest")
EXTRAPOLATIONS = ("clamp", "linear")
SHAPES = ((7, 3), (2, 3, 3, 2))


def require_native() -> None:
    """Skip (with the reason) where no C++ compiler is on PATH; with one, the native operator must build."""
    if shutil.which(native.COMPILER) is None:
        pytest.skip(f"no C++ compiler ({native.COMPILER}) on PATH to build the native operator: install g++ (.ci/install-container-tools.sh does)")
    assert native.kernel() is not None, "the native operator must build here (a C++ compiler is on PATH)"


@pytest.fixture(params=["native", "torch"])
def lookup_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on the native CPU kernel and on the pure-torch lookup (the CUDA path)."""
    if request.param == "torch":
        monkeypatch.setattr(lutnet.training.lut, "kernel", lambda: None)
    else:
        require_native()
    return request.param


def random_layer(mode: str, extrapolate: str, shared: bool, seed: int = 0, bins: int = 6) -> LUTActivation:
    """A float64 layer of 3 channels with random tables and distinct per-channel ranges."""
    generator = torch.Generator().manual_seed(seed)
    layer = LUTActivation(3, bins=bins, range=(-2.0, 2.0), mode=mode, extrapolate=extrapolate, shared=shared).double()
    with torch.no_grad():
        layer.table.copy_(torch.randn(layer.table.shape, generator=generator, dtype=torch.float64))
        if not shared:
            layer.lo.copy_(torch.tensor([-2.0, -1.0, 0.5], dtype=torch.float64))
            layer.hi.copy_(torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64))
    return layer


def away_from_knots(layer: LUTActivation, shape: tuple[int, ...], seed: int = 0, spread: float = 3.0) -> torch.Tensor:
    """Inputs inside and outside the range whose table coordinates keep 0.05 from knots and half-knots.

    The function is not differentiable at knots (linear) and jumps at half-knots (nearest), where finite
    differences would measure the kink or the jump instead of the derivative.
    """
    generator = torch.Generator().manual_seed(seed)
    view = (1, -1) + (1,) * (len(shape) - 2)
    lo, hi = layer.lo.view(view), layer.hi.view(view)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    x = centre + spread * half * (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1)
    step = (hi - lo) / layer.bins
    u = (x - lo) / step
    nudged = torch.floor(2 * u) / 2 + 0.25  # midway between a knot and a half-knot
    return (lo + nudged * step).expand(shape).clone()


def reference(layer: LUTActivation, x: torch.Tensor) -> np.ndarray:
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    return lut_forward(as_np(x), as_np(layer.table), as_np(layer.lo), as_np(layer.hi), layer.mode, layer.extrapolate)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("extrapolate", EXTRAPOLATIONS)
def test_linear_mode_gradients_match_finite_differences(extrapolate: str, shared: bool, shape: tuple[int, ...], lookup_path: str) -> None:
    """Linear mode: analytic gradients of input and table equal float64 finite differences, inside and outside the range."""
    layer = random_layer("linear", extrapolate, shared)
    x = away_from_knots(layer, shape).requires_grad_(True)
    outside = (x < layer.lo.view((1, -1) + (1,) * (x.dim() - 2))).any()
    assert outside, "the inputs must reach outside the range"

    def function(inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        layer.table = torch.nn.Parameter(table) if not isinstance(table, torch.nn.Parameter) else table
        return torch.func.functional_call(layer, {"table": table}, (inputs,))

    assert torch.autograd.gradcheck(function, (x, layer.table.detach().clone().requires_grad_(True)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("extrapolate", EXTRAPOLATIONS)
def test_nearest_mode_table_gradient_is_exact(extrapolate: str, shared: bool, shape: tuple[int, ...], lookup_path: str) -> None:
    """Nearest mode: the table gradient equals finite differences (the output is linear in the table)."""
    layer = random_layer("nearest", extrapolate, shared)
    x = away_from_knots(layer, shape)
    function = lambda table: torch.func.functional_call(layer, {"table": table}, (x,))  # noqa: E731
    assert torch.autograd.gradcheck(function, (layer.table.detach().clone().requires_grad_(True),))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("extrapolate", EXTRAPOLATIONS)
def test_nearest_mode_input_gradient_is_straight_through(extrapolate: str, shared: bool, shape: tuple[int, ...], lookup_path: str) -> None:
    """Nearest mode: the input gradient is the linear-mode derivative of the same table at the same point."""
    nearest, linear = random_layer("nearest", extrapolate, shared), random_layer("linear", extrapolate, shared)
    x = away_from_knots(nearest, shape)
    grads = []
    for layer in (nearest, linear):
        inputs = x.clone().requires_grad_(True)
        weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (layer(inputs) * weights).sum().backward()
        grads.append(inputs.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("shared", [False, True])
def test_nearest_mode_linear_extrapolation_gradient_outside_the_range(shared: bool, lookup_path: str) -> None:
    """Outside the range, nearest mode with linear extrapolation is truly linear: input gradients pass gradcheck."""
    layer = random_layer("nearest", "linear", shared)
    x = away_from_knots(layer, (9, 3), spread=3.0)
    view = (1, -1)
    inside = (x >= layer.lo.view(view)) & (x <= layer.hi.view(view))
    x = torch.where(inside, layer.hi.view(view) + 0.3, x).requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("function,max_curvature", [("gelu", 0.80), ("silu", 0.50), ("tanh", 0.77), ("sigmoid", 0.097)])
def test_init_from_function_is_within_the_interpolation_bound(function: str, max_curvature: float) -> None:
    """A fresh table reproduces its smooth init function within h^2/8 max|f''| inside the range."""
    layer = LUTActivation(4, bins=16, range=(-3.0, 3.0), init=function).double()
    x = torch.linspace(-3.0, 3.0, 2001, dtype=torch.float64).view(-1, 1).expand(-1, 4)
    error = (layer(x) - torch.from_numpy(activation_function(function)(x.numpy()))).abs().max()
    bound = linear_interpolation_bound(np.array([-3.0]), np.array([3.0]), 16, max_curvature)[0]
    assert 0 < error <= bound


@pytest.mark.parametrize("function", ["relu", "identity", "leaky_relu"])
def test_init_from_piecewise_linear_function_is_exact(function: str) -> None:
    """relu, identity and leaky_relu have their kink on a knot, so the table is exact inside the range (up to float32 storage)."""
    layer = LUTActivation(2, bins=64, range=(-4.0, 4.0), init=function).double()
    x = torch.linspace(-4.0, 4.0, 1001, dtype=torch.float64).view(-1, 1).expand(-1, 2)
    torch.testing.assert_close(layer(x), torch.from_numpy(activation_function(function)(x.numpy())), rtol=0, atol=1e-7)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_calibration_sets_percentile_ranges_and_resamples_like_the_reference(mode: str, shared: bool) -> None:
    """Calibration: ranges are the data's percentiles, the table is lutnet's resample_table of the old one."""
    layer = random_layer(mode, "linear", shared)
    old_table, old_lo, old_hi = (t.detach().clone().numpy() for t in (layer.table, layer.lo, layer.hi))
    data = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64) + 0.3
    layer.calibrate(data, 2.0, 98.0)
    flat = data.numpy().reshape(1, -1) if shared else data.numpy().T
    np.testing.assert_allclose(layer.lo.numpy(), np.percentile(flat, 2.0, axis=1), rtol=1e-12)
    np.testing.assert_allclose(layer.hi.numpy(), np.percentile(flat, 98.0, axis=1), rtol=1e-12)
    expected = resample_table(old_table, old_lo, old_hi, layer.lo.numpy(), layer.hi.numpy(), layer.bins, mode, "linear")
    np.testing.assert_allclose(layer.table.detach().numpy(), expected, rtol=0, atol=1e-12)


def test_calibration_preserves_the_function() -> None:
    """After calibration the layer computes the old function up to the two interpolation errors."""
    layer = LUTActivation(3, bins=32, range=(-4.0, 4.0), init="tanh", extrapolate="linear").double()
    before = layer.table.detach().clone(), layer.lo.clone(), layer.hi.clone()
    data = torch.randn(1000, 3, dtype=torch.float64) * torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    probe = torch.quantile(data, torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
    x = torch.stack([torch.linspace(float(a), float(b), 400, dtype=torch.float64) for a, b in probe.T], dim=1)
    old = layer(x).detach()
    layer.calibrate(data)
    assert not torch.equal(layer.lo, before[1])
    new = layer(x).detach()
    old_bound = linear_interpolation_bound(before[1].numpy(), before[2].numpy(), 32, 0.77)
    new_bound = linear_interpolation_bound(layer.lo.numpy(), layer.hi.numpy(), 32, 0.77)
    assert np.all((new - old).abs().max(dim=0).values.numpy() <= 2 * old_bound + new_bound)
    knots = layer.lo.view(1, -1) + (layer.hi - layer.lo).view(1, -1) * torch.linspace(0, 1, 33, dtype=torch.float64).view(-1, 1)
    reference_old = lut_forward(knots.numpy(), before[0].numpy(), before[1].numpy(), before[2].numpy(), "linear", "linear")
    np.testing.assert_allclose(layer(knots).detach().numpy(), reference_old, rtol=0, atol=1e-12)


def test_calibration_widens_a_constant_channel() -> None:
    """A channel whose pre-activations are constant still gets a valid range (hi > lo)."""
    layer = LUTActivation(2, bins=8).double()
    layer.calibrate(torch.zeros(50, 2, dtype=torch.float64))
    assert torch.all(layer.hi > layer.lo)


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    extrapolate=st.sampled_from(EXTRAPOLATIONS),
    shared=st.booleans(),
    bins=st.integers(2, 20),
    channels=st.integers(1, 5),
    image=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_torch_layer_equals_the_numpy_reference(mode: str, extrapolate: str, shared: bool, bins: int, channels: int, image: bool, seed: int) -> None:
    """For any table, ranges, mode and extrapolation the torch layer computes lutnet.lut.lut_forward.

    In float64 the coordinates, and so the chosen knots, are bit-identical; values agree to rounding
    (torch's fused multiply-add may differ from numpy's multiply-then-add in the last bit).
    """
    rng = np.random.default_rng(seed)
    layer = LUTActivation(channels, bins=bins, mode=mode, extrapolate=extrapolate, shared=shared).double()
    rows = layer.table.shape[0]
    lo = rng.normal(size=rows) * 2
    with torch.no_grad():
        layer.table.copy_(torch.from_numpy(rng.normal(size=(rows, bins + 1))))
        layer.lo.copy_(torch.from_numpy(lo))
        layer.hi.copy_(torch.from_numpy(lo + rng.uniform(0.1, 5.0, size=rows)))
    shape = (int(rng.integers(1, 6)), channels) + ((2, 3) if image else ())
    x = torch.from_numpy(rng.normal(size=shape) * 4)
    np.testing.assert_allclose(layer(x).detach().numpy(), reference(layer, x), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_float32_layer_matches_the_reference_closely(mode: str) -> None:
    """The float32 layer (as trained) agrees with the float64 reference to float32 precision away from jumps."""
    layer = random_layer(mode, "linear", False).float()
    x = away_from_knots(layer.double(), (64, 3)).float()
    layer.float()
    np.testing.assert_allclose(layer(x).detach().numpy(), reference(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_smoothness_is_the_reference_tv2_and_its_gradient_is_autograds(shared: bool, lookup_path: str) -> None:
    """smoothness() equals lutnet's second_difference_l1; smoothness_gradient() equals its autograd gradient."""
    layer = random_layer("linear", "clamp", shared)
    with torch.no_grad():
        layer.table[:, 3] = layer.table[:, 2] * 2 - layer.table[:, 1]  # a zero second difference: subgradient 0
    assert float(layer.smoothness().detach()) == pytest.approx(second_difference_l1(layer.table.detach().numpy()), rel=1e-12)
    (expected,) = torch.autograd.grad(layer.smoothness(), layer.table)
    torch.testing.assert_close(layer.smoothness_gradient(), expected, rtol=0, atol=1e-12)


def test_no_tensor_of_batch_times_channels_times_bins_is_saved() -> None:
    """The layer saves O(B C) and O(C K) tensors for backward, never [B, C, K] ones."""
    layer = LUTActivation(16, bins=64)
    x = torch.randn(32, 16, requires_grad=True)
    sizes: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        layer(x).sum().backward()
    assert sizes and max(sizes) <= max(32 * 16, 16 * 65)
    assert layer.table.grad is not None and x.grad is not None


def test_wrong_input_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"expected 3 channels, got 4"):
        LUTActivation(3)(torch.zeros(2, 4))


def test_loading_new_ranges_is_seen_by_the_next_call() -> None:
    """The cached grid follows lo/hi through load_state_dict (in-place copies), as the reference says."""
    layer, other = random_layer("linear", "linear", False), random_layer("linear", "linear", False, seed=5)
    with torch.no_grad():
        other.lo.sub_(1.0)
    x = away_from_knots(layer, (8, 3))
    layer(x)
    layer.load_state_dict(other.state_dict())
    np.testing.assert_allclose(layer(x).detach().numpy(), reference(other, x), rtol=1e-14, atol=1e-14)



def test_inference_mode_call_does_not_spoil_later_training() -> None:
    """A call under inference mode between training steps leaves the next backward pass working and exact."""
    layer = random_layer("linear", "linear", False)
    x = away_from_knots(layer, (8, 3))
    layer(x).sum().backward()
    with torch.inference_mode():
        layer(x)
    x.requires_grad_(True)
    layer(x).sum().backward()
    np.testing.assert_allclose(layer(x).detach().numpy(), reference(layer, x), rtol=1e-14, atol=1e-14)
    assert x.grad is not None


def lookup_with_gradients(layer: LUTActivation, x: torch.Tensor, use_native: bool) -> tuple[torch.Tensor, ...]:
    """``y``, ``grad_x`` and ``grad_table`` of a random weighting of the output, on the chosen path."""
    inputs, table = x.clone().requires_grad_(True), layer.table.detach().clone().requires_grad_(True)
    lo, step, offsets = layer.grid(x)
    nearest, clamp = layer.mode == "nearest", layer.extrapolate == "clamp"
    kernel = native.kernel()
    if use_native:
        assert kernel is not None
        y = kernel.lookup(inputs, table, lo, step, nearest, clamp)
    else:
        y = lutnet.training.lut._Lookup.apply(inputs, table, lo, step, offsets, nearest, clamp)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype))
    return y.detach(), inputs.grad, table.grad


def grid_and_random_inputs(layer: LUTActivation, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Inputs far outside, at the edges, exactly on knots and half-knots (the points where rounding decides), and random."""
    view = (1, -1) + (1,) * (len(shape) - 2)
    lo, hi = layer.lo.to(dtype).view(view), layer.hi.to(dtype).view(view)
    step = (hi - lo) / layer.bins
    generator = torch.Generator().manual_seed(3)
    coordinates = torch.randint(-2 * layer.bins, 4 * layer.bins, shape, generator=generator).to(dtype) / 2  # knots, half-knots
    x = lo + coordinates * step
    scattered = lo + (hi - lo) * (4 * torch.rand(shape, generator=generator, dtype=dtype) - 1.5)
    pick = torch.rand(shape, generator=generator) < 0.5
    x = torch.where(pick, x, scattered)
    x.view(-1)[:4] = torch.tensor([-1e30, 1e30, 0.0, -0.0], dtype=dtype)
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(64, 37), (4, 37, 5, 5), (3, 37, 1, 3)])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("extrapolate", EXTRAPOLATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_native_kernel_equals_the_torch_path_exactly(mode: str, extrapolate: str, shared: bool, shape: tuple[int, ...],
                                                     dtype: torch.dtype) -> None:
    """Forward values, input and table gradients of the native kernel are bit-identical to the torch lookup's.

    37 channels and 25 pixels give both whole 8-lane vectors and scalar tails in the float32 kernel.
    """
    require_native()
    layer = LUTActivation(37, bins=16, range=(-1.5, 2.0), mode=mode, extrapolate=extrapolate, shared=shared).to(dtype)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        layer.table.copy_(torch.randn(layer.table.shape, generator=generator, dtype=dtype))
        if not shared:
            layer.lo.copy_(torch.linspace(-3.0, 1.0, 37, dtype=dtype))
            layer.hi.copy_(layer.lo + torch.linspace(0.1, 6.0, 37, dtype=dtype))
    x = grid_and_random_inputs(layer, shape, dtype)
    for name, got, expected in zip(("y", "grad_x", "grad_table"), lookup_with_gradients(layer, x, True),
                                   lookup_with_gradients(layer, x, False), strict=True):
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert torch.equal(got, expected), f"{name}: largest difference {(got - expected).abs().max().item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [2, 3, 5, 64])
def test_native_smoothness_gradient_equals_the_torch_path_exactly(bins: int, dtype: torch.dtype,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The native TV(2) gradient is bit-identical to the torch formula, zero curvatures (sign 0) included."""
    layer = LUTActivation(7, bins=bins).to(dtype)
    with torch.no_grad():
        layer.table.copy_(torch.randn(layer.table.shape, generator=torch.Generator().manual_seed(5), dtype=dtype))
        layer.table[:3] = torch.arange(bins + 1, dtype=dtype) * 0.25  # straight rows: every second difference is 0
    require_native()
    got = layer.smoothness_gradient()
    monkeypatch.setattr(lutnet.training.lut, "kernel", lambda: None)
    expected = layer.smoothness_gradient()
    assert torch.equal(got, expected)
    assert torch.equal(got[:3], torch.zeros_like(got[:3])) and got[3:].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adding_the_smoothness_gradient_natively_equals_the_torch_path_exactly(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """``add_smoothness_gradient_`` (one native call in training) rounds as ``grad.add_(smoothness_gradient(), alpha=w)``."""
    layer = LUTActivation(5, bins=9).to(dtype)
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        layer.table.copy_(torch.randn(layer.table.shape, generator=generator, dtype=dtype))
    start = torch.randn(layer.table.shape, generator=generator, dtype=dtype)
    require_native()
    results = []
    for use_native in (True, False):
        if not use_native:
            monkeypatch.setattr(lutnet.training.lut, "kernel", lambda: None)
        layer.table.grad = start.clone()
        layer.add_smoothness_gradient_(3e-4)
        results.append(layer.table.grad.clone())
    assert torch.equal(*results) and not torch.equal(results[0], start)


@pytest.fixture
def fresh_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A kernel() that builds again, into an empty cache directory; the cached kernel is restored afterwards."""
    monkeypatch.setenv("LUTNET_CACHE_DIR", str(tmp_path))
    native.kernel.cache_clear()
    yield tmp_path
    native.kernel.cache_clear()


def test_kernel_is_compiled_once_into_the_cache_directory(fresh_kernel: Path) -> None:
    """The first call compiles one library into $LUTNET_CACHE_DIR; a later first call (as in a new process) reuses it."""
    if shutil.which(native.COMPILER) is None:
        pytest.skip(f"no C++ compiler ({native.COMPILER}) on PATH to build the native operator")
    assert native.needs_build()  # `lutnet train` announces the compilation when this is true
    assert native.kernel() is not None and not native.needs_build()
    (library,) = fresh_kernel.glob("lut_op_*.so")
    built = library.stat().st_mtime_ns
    native.kernel.cache_clear()
    assert native.kernel() is not None
    assert library.stat().st_mtime_ns == built and list(fresh_kernel.iterdir()) == [library]


def test_lutnet_native_0_uses_the_torch_path(fresh_kernel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LUTNET_NATIVE=0 switches the kernel off: nothing is compiled, and the layer still computes the reference."""
    monkeypatch.setenv("LUTNET_NATIVE", "0")
    assert native.kernel() is None
    layer = random_layer("linear", "linear", False)
    x = away_from_knots(layer, (8, 3))
    np.testing.assert_allclose(layer(x).detach().numpy(), reference(layer, x), rtol=1e-14, atol=1e-14)
    assert list(fresh_kernel.iterdir()) == []


def test_without_a_c_compiler_the_torch_path_is_used(fresh_kernel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No compiler on PATH: no error, no library, and training still works through the torch lookup."""
    monkeypatch.setattr(native, "COMPILER", "no-such-c-compiler")
    assert native.kernel() is None
    layer = random_layer("nearest", "clamp", True)
    x = away_from_knots(layer, (8, 3, 2, 2)).requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.table.grad.abs().sum() > 0
    assert list(fresh_kernel.glob("*.so")) == []
