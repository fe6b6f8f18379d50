"""Schemas of the ``model`` group: the MLP and the recurrent (GRU) networks.

Defaults are the reference implementation's networks, written here only: the recipe
YAML ``harl_torchrl/conf/model/<name>.yaml`` inherits the schema and repeats none of it.
"""

from dataclasses import dataclass, field
from typing import ClassVar

from harl_torchrl.config.base import ModelConfig, choices
from harl_torchrl.config.registry import register_model

Activation = choices("Activation", "relu", "tanh", "leaky_relu", "elu", "silu")


@register_model
@dataclass
class MLPModelConfig(ModelConfig):
    """Feed-forward actors and critic (``harl_torchrl/conf/model/mlp.yaml``).

    Attributes:
        hidden_sizes: trunk widths (each > 0).
        activation: trunk activation.
        feature_norm: LayerNorm on the inputs.
        output_gain: orthogonal-init gain of the action head.
        std_x_coef: Gaussian heads: initial value of the learnt log-std parameter.
        std_y_coef: Gaussian heads: scale of the standard deviation.
    """

    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    activation: Activation = Activation.relu  # type: ignore[valid-type]
    feature_norm: bool = True
    output_gain: float = 0.01
    std_x_coef: float = 1.0
    std_y_coef: float = 0.5

    def validate(self) -> None:
        """Every hidden size > 0; ``output_gain``, ``std_x_coef``, ``std_y_coef`` > 0."""
        super().validate()
        if not self.hidden_sizes or any(size <= 0 for size in self.hidden_sizes):
            raise self.fail("hidden_sizes", "must be a non-empty list of positive widths")
        self.require_positive("output_gain", "std_x_coef", "std_y_coef")

    def network_kwargs(self) -> dict:
        """The keyword arguments of the actor and critic builders."""
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "activation": str(self.activation),
            "feature_norm": self.feature_norm,
            "output_gain": self.output_gain,
            "std_x_coef": self.std_x_coef,
            "std_y_coef": self.std_y_coef,
        }


@register_model
@dataclass
class GRUModelConfig(MLPModelConfig):
    """Recurrent actors and critic: MLP trunk -> GRU -> head (``harl_torchrl/conf/model/gru.yaml``).

    Attributes:
        rnn_hidden_size: the GRU's width (> 0).
        chunk_length: training sequence length (the reference's ``data_chunk_length``);
            ``collector.rollout_steps`` must be a multiple of it.
    """

    recurrent: ClassVar[bool] = True
    name: str = "gru"
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    rnn_hidden_size: int = 128
    chunk_length: int = 10

    def validate(self) -> None:
        """Also ``rnn_hidden_size`` and ``chunk_length`` > 0."""
        super().validate()
        self.require_positive("rnn_hidden_size", "chunk_length")

    @property
    def sequence_length(self) -> int:
        """Training sequence length: ``chunk_length``."""
        return self.chunk_length
