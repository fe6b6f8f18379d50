"""The reference implementation's MLP trunk: LayerNorm, orthogonal initialisation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
_GAIN_NAMES = {"relu": "relu", "tanh": "tanh", "leaky_relu": "leaky_relu", "elu": "relu", "silu": "relu"}


def activation_class(name: str) -> type[nn.Module]:
    """Returns the activation module class for ``name`` (``relu``, ``tanh``, ...).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    from harl_torchrl.errors import unknown_choice

    if name not in _ACTIVATIONS:
        raise unknown_choice("activation", name, _ACTIVATIONS)
    return _ACTIVATIONS[name]


def orthogonal_(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias, in place; returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLPTrunk(nn.Sequential):
    """Feature trunk ``[LayerNorm] -> (Linear -> act -> LayerNorm) x L``.

    This is the reference HARL ``MLPBase``: an optional LayerNorm on the raw input
    ("feature normalisation"), then per hidden layer a Linear with orthogonal weights
    (gain of the activation), the activation and a LayerNorm.

    Args:
        in_features: input size.
        hidden_sizes: width of each hidden layer.
        activation: ``"relu"`` (default), ``"tanh"``, ``"leaky_relu"``, ``"elu"``,
            ``"silu"``.
        feature_norm: LayerNorm the input first.

    Example:
        >>> import torch
        >>> trunk = MLPTrunk(10, [64, 64])
        >>> trunk(torch.randn(3, 10)).shape
        torch.Size([3, 64])
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        feature_norm: bool = True,
    ) -> None:
        act = activation_class(activation)
        gain = nn.init.calculate_gain(_GAIN_NAMES[activation])
        layers: list[nn.Module] = [nn.LayerNorm(in_features)] if feature_norm else []
        width = in_features
        for size in hidden_sizes:
            layers += [orthogonal_(nn.Linear(width, size), gain), act(), nn.LayerNorm(size)]
            width = size
        super().__init__(*layers)
        self.out_features = width
