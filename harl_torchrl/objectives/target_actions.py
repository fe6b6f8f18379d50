r"""Next actions for the DDPG/TD3 critic targets: every agent's target actor, with TD3's smoothing noise.

For agent :math:`i` with action box :math:`[l, u]` and half-range :math:`h = (u - l) / 2`,

.. math::

    a'^i = \operatorname{clamp}\Big( \mu'^i(o'^i) + \operatorname{clamp}(\epsilon, -c\,h, c\,h),\; l,\; u \Big),
    \qquad \epsilon \sim \mathcal{N}(0, (\sigma h)^2),

with :math:`\mu'^i` the Polyak-averaged target actor, :math:`\sigma` = ``noise_std``
(reference 0.2) and :math:`c` = ``noise_clip`` (0.5); :math:`\sigma = 0` gives DDPG's
noiseless targets.

This is where we differ from TorchRL's ``TD3Loss``: there the noise and its clip are in
*absolute* action units; here, as in the reference implementation, both are scaled by each
box's half-range, so that one setting means the same on a ``[-1, 1]`` box and on a
``[-0.4, 0.4]`` one (MaMuJoCo's Humanoid), and agents with different boxes get
proportionate noise.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.data import TensorSpec
from torchrl.objectives import LossModule

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.deterministic import box_bounds
from harl_torchrl.objectives.binding import ParameterBinding


class TargetActions(LossModule):
    r"""Target copies of every agent's actor, producing smoothed next actions for :class:`JointQLoss`.

    Keys: each actor reads its own inputs in the next-step TensorDict it is given (e.g.
    ``(agent, "observation")``) and writes its ``out_keys[0]`` (``(agent, "action")``),
    which is then perturbed and clamped in place.

    The actors go through TorchRL's ``convert_to_functional(..., create_target_params=True)``
    as one ``ModuleDict`` (``actors_params`` are the live actors' parameters,
    ``target_actors_params`` their Polyak-averaged copies): update them with
    ``SoftUpdate(target_actions, tau=0.005)``, on the same iterations as the critic's.
    Noise is drawn from torch's global generator.

    Args:
        actors: ``{agent: deterministic actor}``.
        action_specs: ``{agent: Bounded action spec}`` (same agents).
        noise_std: :math:`\sigma`, in units of each box's half-range (0: DDPG).
        noise_clip: :math:`c`, same units.

    Raises:
        ConfigError: missing specs, non-box specs, or negative noise settings.

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> from torchrl.objectives import SoftUpdate
        >>> from harl_torchrl.modules import make_deterministic_actor
        >>> spec = Bounded(-1.0, 1.0, shape=(2,))
        >>> targets = TargetActions({"a": make_deterministic_actor("a", 3, spec)}, {"a": spec})
        >>> updater = SoftUpdate(targets, tau=0.005)
        >>> next_td = targets(TensorDict({("a", "observation"): torch.randn(4, 3)}, [4]))
        >>> bool(next_td["a", "action"].abs().max() <= 1.0)
        True
    """

    actors: nn.ModuleDict
    actors_params: TensorDictParams
    target_actors_params: TensorDictParams

    def __init__(
        self,
        actors: Mapping[str, TensorDictModuleBase],
        action_specs: Mapping[str, TensorSpec],
        *,
        noise_std: float = 0.2,
        noise_clip: float = 0.5,
    ) -> None:
        if set(actors) != set(action_specs):
            raise ConfigError(f"actors {sorted(actors)} and action specs {sorted(action_specs)} name different agents")
        if noise_std < 0 or noise_clip < 0:
            raise ConfigError(f"noise_std and noise_clip must be >= 0, got {noise_std} and {noise_clip}")
        super().__init__()
        self.agent_names = list(actors)
        self.convert_to_functional(nn.ModuleDict(dict(actors)), "actors", create_target_params=True)
        self._target_actors = ParameterBinding(self.actors)  # the actors on their target parameters
        for index, agent in enumerate(self.agent_names):
            low, high = box_bounds(agent, action_specs[agent])
            # the bounds live where the agent's actor does (specs are usually on the CPU)
            device = next(iter(actors[agent].parameters()), low).device
            self.register_buffer(f"low_{index}", low.to(device))
            self.register_buffer(f"high_{index}", high.to(device))
        self.noise_std = float(noise_std)
        self.noise_clip = float(noise_clip)
        self._noise_cache: dict[int, tuple] = {}  # see _noise_terms

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator."""

    def _apply(self, *args, **kwargs):
        """Moves or casts the parameters (``.to``, ``.double``, ...); the target actors are bound to them anew."""
        if "_target_actors" in self.__dict__:  # not yet while the constructor runs
            self._target_actors.reset()
        return super()._apply(*args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        """Loads this module's own entries; the target actors are bound anew (a load may replace tensors)."""
        if "_target_actors" in self.__dict__:
            self._target_actors.reset()
        super()._load_from_state_dict(*args, **kwargs)

    def bounds(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)`` of the ``index``-th agent's box."""
        return getattr(self, f"low_{index}"), getattr(self, f"high_{index}")

    def smooth(self, action: torch.Tensor, index: int) -> torch.Tensor:
        """Adds the clipped, box-scaled noise to one agent's action and clamps it to the box."""
        low, high = self.bounds(index)
        if self.noise_std > 0:
            scale, limit = self._noise_terms(index, low, high)
            noise = torch.randn_like(action) * scale
            action = action + noise.clamp(-limit, limit)  # -limit <= limit: max(min(noise, limit), -limit)
        return action.clamp(low, high)  # low < high: max(min(action, high), low)

    def _noise_terms(self, index: int, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise_std * h, noise_clip * h)`` with ``h = (high - low) / 2``, kept while the box and settings are."""
        key = (low, high, self.noise_std, self.noise_clip)
        cached = self._noise_cache.get(index)
        if cached is None or cached[0][0] is not low or cached[0][1] is not high or cached[0][2:] != key[2:]:
            half_range = (high - low) / 2
            cached = (key, (self.noise_std * half_range, self.noise_clip * half_range))
            self._noise_cache[index] = cached
        return cached[1]

    @torch.no_grad()
    def forward(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        """Writes every agent's smoothed target action into ``next_tensordict`` and returns it."""
        actors = self._target_actors.module(self.target_actors_params)  # see objectives.binding
        for index, agent in enumerate(self.agent_names):
            actor = actors[agent]
            next_tensordict = actor(next_tensordict)
            key = actor.out_keys[0]
            next_tensordict.set(key, self.smooth(next_tensordict.get(key), index))
        return next_tensordict
