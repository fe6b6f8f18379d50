"""Exploration for the off-policy algorithms, as TorchRL modules placed after the actors.

===========  ======================================================================
algorithm    collection policy
===========  ======================================================================
DDPG / TD3   deterministic actors, then :func:`gaussian_noise` (TorchRL's
             :class:`~torchrl.modules.AdditiveGaussianModule`, scaled to each box)
SAC          the stochastic actors themselves (sampling is the exploration)
D3QN         greedy dueling Q-actors, then :func:`epsilon_greedy` (TorchRL's
             :class:`~torchrl.modules.EGreedyModule`, one per agent)
all          :class:`RandomWarmup` last: uniform random actions while it is active
===========  ======================================================================

Every module acts only under ``ExplorationType.RANDOM`` (what collectors use), so the
same policy evaluated under ``set_exploration_type(ExplorationType.DETERMINISTIC)``
is the plain deterministic (or greedy / mode) policy. They draw from torch's global
generator, whose state checkpoints carry.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torchrl.data import Bounded, Composite, TensorSpec
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import AdditiveGaussianModule, EGreedyModule

from harl_torchrl.errors import ConfigError


def _exploring() -> bool:
    return exploration_type() in (ExplorationType.RANDOM, None)


def action_specs(env) -> dict[str, TensorSpec]:
    """``{agent: unbatched action spec}`` of a one-group-per-agent env."""
    return {agent: env.full_action_spec_unbatched[agent, "action"] for agent in env.group_map}


def gaussian_noise(specs: Mapping[str, TensorSpec], sigma: float) -> TensorDictSequential:
    r"""Gaussian exploration noise scaled to each action box, then clamped to it.

    For agent i with box :math:`[l, u]`: :math:`a \leftarrow \mathrm{clamp}(a + \sigma h
    \epsilon, l, u)`, :math:`h = (u - l)/2`, :math:`\epsilon \sim \mathcal N(0, I)` (the
    reference's ``expl_noise``, 0.1 by default). Reads and writes ``(agent, "action")``.

    Args:
        specs: ``{agent: Bounded spec}``.
        sigma: noise scale as a fraction of the half-range.

    Raises:
        ConfigError: a spec is not a bounded box.

    Example:
        >>> from tensordict import TensorDict
        >>> noise = gaussian_noise({"a": Bounded(0.0, 1.0, shape=(2,))}, 0.1)
        >>> out = noise(TensorDict({("a", "action"): torch.full((1000, 2), 0.999)}, [1000]))
        >>> bool(out["a", "action"].max() <= 1.0), round(out["a", "action"].std().item(), 2) > 0
        (True, True)
    """
    modules = []
    for agent, spec in specs.items():
        if not isinstance(spec, Bounded) or not spec.domain == "continuous":
            raise ConfigError(
                f"Gaussian exploration needs a continuous box action for agent {agent!r}, got "
                f"{type(spec).__name__}; use an algorithm for discrete actions (algo=hasac or algo=had3qn)"
            )
        half_range = ((spec.space.high - spec.space.low) / 2).tolist()
        modules.append(
            AdditiveGaussianModule(
                Composite({(agent, "action"): spec}),
                sigma_init=sigma,
                sigma_end=sigma,
                annealing_num_steps=1,
                std=half_range,
                action_key=(agent, "action"),
            )
        )
    return TensorDictSequential(*modules)


def epsilon_greedy(specs: Mapping[str, TensorSpec], epsilon: float, mask_keys: Mapping[str, str] | None = None):
    """Epsilon-greedy over each agent's discrete actions (TorchRL's ``EGreedyModule``).

    With probability ``epsilon`` an agent's action is replaced by a uniformly random
    available one (``mask_keys[agent]``: its boolean action-mask entry). Reads and
    writes ``(agent, "action")``.

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Categorical
        >>> explore = epsilon_greedy({"a": Categorical(5)}, 0.5)
        >>> out = explore(TensorDict({("a", "action"): torch.zeros(1000, dtype=torch.long)}, [1000]))
        >>> 0.3 < (out["a", "action"] != 0).float().mean().item() < 0.5
        True
    """
    mask_keys = dict(mask_keys or {})
    return TensorDictSequential(
        *(
            EGreedyModule(
                Composite({(agent, "action"): spec}),
                eps_init=epsilon,
                eps_end=epsilon,
                annealing_num_steps=1,
                action_key=(agent, "action"),
                action_mask_key=(agent, mask_keys[agent]) if agent in mask_keys else None,
            )
            for agent, spec in specs.items()
        )
    )


class RandomWarmup(TensorDictModuleBase):
    """Replaces every agent's action by a uniform random one while :attr:`active` (the warm-up).

    Placed after the policy, so the collected data keeps the same entries during and
    after the warm-up. Discrete agents with an action mask draw among the available
    actions only. Acts only under ``ExplorationType.RANDOM``.

    Args:
        specs: ``{agent: unbatched action spec}``.
        mask_keys: ``{agent: name of its action-mask entry}`` for masked agents.

    Example:
        >>> from tensordict import TensorDict
        >>> warmup = RandomWarmup({"a": Bounded(-2.0, 2.0, shape=(1,))})
        >>> out = warmup(TensorDict({("a", "action"): torch.zeros(500, 1)}, [500]))
        >>> bool(out["a", "action"].abs().max() > 1.0), bool(out["a", "action"].abs().max() <= 2.0)
        (True, True)
        >>> warmup.active = False
        >>> warmup(TensorDict({("a", "action"): torch.zeros(3, 1)}, [3]))["a", "action"].abs().sum().item()
        0.0
    """

    def __init__(self, specs: Mapping[str, TensorSpec], mask_keys: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.specs = dict(specs)
        self.mask_keys = dict(mask_keys or {})
        self.in_keys = [(agent, "action") for agent in self.specs] + [
            (agent, key) for agent, key in self.mask_keys.items()
        ]
        self.out_keys = [(agent, "action") for agent in self.specs]
        # a buffer, not a plain attribute: collector weight updates carry it to worker processes
        self.register_buffer("_active", torch.tensor(True))

    @property
    def active(self) -> bool:
        """Whether actions are being replaced (the warm-up is running)."""
        return bool(self._active)

    @active.setter
    def active(self, value: bool) -> None:
        self._active.fill_(bool(value))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not (self.active and _exploring()):
            return tensordict
        for agent, spec in self.specs.items():
            current = tensordict.get((agent, "action"))
            batch_shape = current.shape[: current.ndim - len(spec.shape)]
            if agent in self.mask_keys:
                mask = tensordict.get((agent, self.mask_keys[agent]))
                action = torch.multinomial(mask.reshape(-1, mask.shape[-1]).float(), 1).reshape(batch_shape)
                action = action.reshape(current.shape).to(current.dtype)
            else:
                action = spec.rand(batch_shape).to(current.device)
            tensordict.set((agent, "action"), action)
        return tensordict
