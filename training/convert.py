"""A user's own ``nn.Module`` with LUT activations: converting its activations, calibrating, the penalty and the tables.

Every function here works on any module: it finds the :class:`LUTActivation` layers among its
submodules, wherever they sit.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from lutnet.errors import LutnetError
from lutnet.training.lut import LUTActivation, add_smoothness_gradients_

# The activation modules ``replace_activations`` converts by default, and the init function each table starts as.
CONVERTIBLE: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh"}
# The training recipe for the tables, chosen on validation splits (benchmarks/tuning.py, results tuning_recipe*.json):
DEFAULT_PERCENTILES = (1.0, 99.0)  # each table's range: these percentiles of its calibration batch's pre-activations
TABLE_LR = 3e-3  # the tables' own learning rate (AdamW), above the weights' so they move from their init function
TABLE_WEIGHT_DECAY = 0.0
RECALIBRATE_AFTER = 5  # epochs after which to calibrate again (ranges fitted to the warmed-up pre-activations)


def lut_layers(model: nn.Module) -> list[LUTActivation]:
    """Every LUT layer of ``model``, in the order of ``model.modules()``."""
    return [module for module in model.modules() if isinstance(module, LUTActivation)]


def named_lut_layers(model: nn.Module) -> Iterator[tuple[str, LUTActivation]]:
    """``(qualified name, layer)`` of every LUT layer of ``model``."""
    return ((name, module) for name, module in model.named_modules() if isinstance(module, LUTActivation))


def replace_activations(
    model: nn.Module,
    types: Iterable[type[nn.Module]] = tuple(CONVERTIBLE),
    *,
    names: Iterable[str] | None = None,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
    bins: int = 16,
    range: tuple[float, float] = (-4.0, 4.0),
    mode: str = "linear",
    extrapolate: str = "linear",
    shared: bool = False,
    dim: int = 1,
) -> nn.Module:
    """Swap ``model``'s activation modules for LUT layers, each table starting as the function it replaces; returns ``model``.

    ``types`` chooses which activation classes are converted (of ``nn.ReLU``, ``nn.GELU``, ``nn.SiLU`` and
    ``nn.Tanh``); ``names``, if given, keeps only modules whose qualified name matches one of these
    ``fnmatch`` patterns (``"encoder.*.act"``). Channels sit on ``dim`` of each activation's input (1 for
    ``[B, C]`` and ``[B, C, H, W]``, -1 for channels-last ``[B, T, C]``). The new layers learn their channel
    count from their first input: ``example_inputs``, when given, runs one forward pass to create every table
    now (so an optimizer can be built straight away); otherwise the first call (or :func:`calibrate`) does.
    Until trained, the model computes what it computed before, up to the interpolation error of ``bins`` bins
    over ``range`` (calibrate the ranges to tighten it where the pre-activations are).
    """
    types = tuple(types)
    unknown = [t for t in types if t not in CONVERTIBLE]
    if unknown:
        raise LutnetError("activation types to replace", expected=f"some of {[t.__name__ for t in CONVERTIBLE]}", got=[t.__name__ for t in unknown])
    patterns = None if names is None else list(names)
    for name, parent, child_name, child in _children(model):
        if type(child) in types and (patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)):
            init = _init_function(child)
            setattr(parent, child_name, LUTActivation(None, bins=bins, range=range, mode=mode, extrapolate=extrapolate, init=init,
                                                       shared=shared, dim=dim))
    if example_inputs is not None:
        with torch.no_grad():
            model(*_as_tuple(example_inputs))
    return model


def _init_function(activation: nn.Module) -> str:
    if isinstance(activation, nn.GELU) and activation.approximate != "none":
        raise LutnetError("nn.GELU to replace", expected="approximate='none' (the exact GELU a table starts as)", got=repr(activation.approximate))
    return CONVERTIBLE[type(activation)]


def _children(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module, str, nn.Module]]:
    """``(qualified name, parent, attribute name, module)`` of every submodule, depth first."""
    for child_name, child in list(model.named_children()):
        name = f"{prefix}{child_name}"
        yield name, model, child_name, child
        yield from _children(child, f"{name}.")


def _as_tuple(inputs: tuple[torch.Tensor, ...] | torch.Tensor) -> tuple[torch.Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


@torch.no_grad()
def calibrate(model: nn.Module, batch: tuple[torch.Tensor, ...] | torch.Tensor, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> nn.Module:
    """Set every LUT layer's range to percentiles of its inputs on ``batch``, in one forward pass; returns ``model``.

    Layers are calibrated in the order the forward pass reaches them, each on the inputs it gets from the
    already calibrated layers before it. Tables are resampled, so each keeps its function.
    """
    hooks = [layer.register_forward_pre_hook(lambda layer, args: layer.calibrate(args[0], *percentiles)) for layer in lut_layers(model)]
    try:
        model(*_as_tuple(batch))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def smoothness(model: nn.Module) -> torch.Tensor:
    """The TV(2) penalty of every LUT table of ``model``, summed (add ``weight * smoothness(model)`` to the loss)."""
    layers = lut_layers(model)
    if not layers:
        return torch.zeros(())
    return torch.stack([layer.smoothness() for layer in layers]).sum()


def add_smoothness_gradients(model: nn.Module, weight: float) -> None:
    """The gradient of ``weight * smoothness(model)`` added straight to the tables' ``.grad`` (after ``backward``), without autograd."""
    layers = [layer for layer in lut_layers(model) if layer.table.grad is not None]
    if layers:
        add_smoothness_gradients_(layers, weight)


def lut_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The tables of ``model``'s LUT layers, for an optimizer group of their own (every other parameter: ``other_parameters``)."""
    return [layer.table for layer in lut_layers(model)]


def optimizer_groups(model: nn.Module, lr: float, weight_decay: float, table_lr: float = TABLE_LR,
                     table_weight_decay: float = TABLE_WEIGHT_DECAY) -> list[dict[str, object]]:
    """Parameter groups for any torch optimizer: every other parameter at ``lr``, the tables at their own rate (the recipe's
    by default). Calibrate again after ``RECALIBRATE_AFTER`` epochs and drop the tables' optimizer state then."""
    groups: list[dict[str, object]] = [{"params": other_parameters(model), "lr": lr, "weight_decay": weight_decay}]
    if tables := lut_parameters(model):
        groups.append({"params": tables, "lr": table_lr, "weight_decay": table_weight_decay})
    return groups


def other_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model`` that is not a LUT table."""
    tables = {id(table) for table in lut_parameters(model)}
    return [p for p in model.parameters() if id(p) not in tables]
