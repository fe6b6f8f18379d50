"""The agents' update order: one seeded generator shared by the on-policy and off-policy schemes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from harl_torchrl.errors import ConfigError

Order = Literal["random", "fixed"]


class AgentOrder:
    """Draws the order in which agents are updated, from its own seeded generator.

    ``"random"`` draws a fresh permutation of ``agent_names`` per call (the HARL
    scheme); ``"fixed"`` always returns ``agent_names`` as given (the MA baselines)
    and leaves the generator untouched. The generator is public
    (:attr:`generator`) because the on-policy updater also draws its minibatch
    shuffles from it: one stream, one state to checkpoint.

    Args:
        agent_names: the agents, in their fixed order.
        order: ``"random"`` or ``"fixed"``.
        seed: seed of the generator; ``None`` draws one from torch's global generator.

    Raises:
        ConfigError: no agents, or ``order`` is neither ``"random"`` nor ``"fixed"``.

    Example:
        >>> orders = AgentOrder(["a", "b", "c"], seed=0)
        >>> first = orders.draw()
        >>> sorted(first)
        ['a', 'b', 'c']
        >>> AgentOrder(["a", "b", "c"], seed=0).draw() == first
        True
        >>> AgentOrder(["a", "b", "c"], order="fixed").draw()
        ['a', 'b', 'c']
    """

    def __init__(self, agent_names: Sequence[str], order: Order = "random", seed: int | None = None) -> None:
        if not agent_names:
            raise ConfigError("the update order needs at least one agent")
        if order not in ("random", "fixed"):
            raise ConfigError(f"order must be 'random' or 'fixed', got {order!r}")
        self.agent_names: list[str] = list(agent_names)
        self.order = order
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> list[str]:
        """This iteration's agent order (consumes the generator when random)."""
        if self.order == "fixed":
            return list(self.agent_names)
        permutation = torch.randperm(len(self.agent_names), generator=self.generator)
        return [self.agent_names[i] for i in permutation.tolist()]

    def indices(self, order: Sequence[str]) -> torch.Tensor:
        """The positions of ``order``'s agents in :attr:`agent_names` (the ``"order"`` diagnostic)."""
        return torch.tensor([self.agent_names.index(name) for name in order])

    def state_dict(self) -> dict:
        """``{"generator": state}``, so that a resumed run draws the same orders."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
