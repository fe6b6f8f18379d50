"""The on-policy sequential updater (HAPPO, HATRPO, HAA2C, and MAPPO/IPPO through the same loop)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import set_recurrent_mode

from harl_torchrl.errors import ConfigError
from harl_torchrl.sequential.order import AgentOrder, Order
from harl_torchrl.sequential.trainers import AgentTrainer, normalize_advantage


class SequentialUpdater:
    """Updates heterogeneous agents one after another, then the centralised critic.

    One call of :meth:`update` is one iteration of the scheme described in
    :mod:`harl_torchrl.sequential`:

    1. normalise the advantage once over the batch (never per agent, which would
       undo the factor; baselines with per-agent critics have one advantage entry
       per agent, each normalised once);
    2. draw the order (``"random"``: a fresh permutation per call from the
       updater's own seeded generator; ``"fixed"``: the order of ``agents``);
    3. for each agent in turn: write the current factor ``M`` to ``factor_key``,
       run its trainer, then multiply ``M`` by ``exp(logp_new - logp_old)`` of its
       stored actions, without gradient;
    4. train the critic (or each critic) on the same batch.

    The batch passed in is not modified (a shallow copy carries the normalised
    advantage and the factor).

    Args:
        agents: ``{agent_name: trainer}``; each trainer has a ``loss`` with
            ``log_prob(td)`` and ``tensor_keys.sample_log_prob`` (any
            :class:`~harl_torchrl.objectives.HAPolicyLoss`) and a
            ``train(batch, generator)`` method (:class:`PolicyTrainer`). Each agent of
            a stacked TorchRL group is one entry, its loss built on
            :attr:`AgentStack.actors` ``[name]``; stacked and one-agent groups mix.
        critic: the critic's trainer (:class:`CriticTrainer`), a mapping of several
            (decentralised critics, e.g. IPPO), or ``None`` when the caller trains it.
        order: ``"random"`` (default, the paper's scheme) or ``"fixed"``.
        seed: seed of the updater's generator (order and minibatch shuffles);
            ``None`` draws one from torch's global generator.
        use_factor: ``False`` keeps ``M = 1`` for every agent (simultaneous-update
            baselines such as MAPPO/IPPO run through the same loop).
        normalize_advantage: normalise the advantage once per iteration.
        advantage_key: where the advantage is read. Losses with
            ``tensor_keys.advantage`` (every HA loss, TorchRL's PPO losses) name
            their own, and an ``advantage_key`` that disagrees with one of them is
            refused (remap the loss with ``loss.set_keys(advantage=...)``); for
            other losses it defaults to ``"advantage"``.
        factor_key: where the factor is written.

    Example:
        >>> import torch
        >>> from torchrl.data import Bounded
        >>> from tensordict import TensorDict
        >>> from harl_torchrl.modules import make_agent_actor
        >>> from harl_torchrl.objectives import HAPPOLoss
        >>> from harl_torchrl.sequential import PolicyTrainer
        >>> actors = {a: make_agent_actor(a, 3, Bounded(-1.0, 1.0, shape=(1,))) for a in ("a", "b")}
        >>> trainers = {
        ...     a: PolicyTrainer(HAPPOLoss(actor), torch.optim.Adam(actor.parameters(), lr=5e-4))
        ...     for a, actor in actors.items()
        ... }
        >>> updater = SequentialUpdater(trainers, critic=None, seed=0)
        >>> batch = TensorDict({(a, "observation"): torch.randn(16, 3) for a in actors}, [16])
        >>> with torch.no_grad():
        ...     for actor in actors.values():
        ...         batch = actor(batch)
        >>> batch["advantage"] = torch.randn(16, 1)
        >>> diagnostics = updater.update(batch)
        >>> sorted(updater.last_order)
        ['a', 'b']
    """

    def __init__(
        self,
        agents: Mapping[str, AgentTrainer],
        critic: AgentTrainer | Mapping[str, AgentTrainer] | None,
        *,
        order: Order = "random",
        seed: int | None = None,
        use_factor: bool = True,
        normalize_advantage: bool = True,
        advantage_key: NestedKey | None = None,
        factor_key: NestedKey = "factor",
    ) -> None:
        if not agents:
            raise ConfigError("SequentialUpdater needs at least one agent")
        if order not in ("random", "fixed"):
            raise ConfigError(f"order must be 'random' or 'fixed', got {order!r}")
        reserved = {"critic", "order"} & set(agents)
        if reserved:
            raise ConfigError(f"agent names {sorted(reserved)} are reserved for diagnostics; rename the groups")
        self.agents = dict(agents)
        self.agent_names: list[str] = list(agents)
        self.critic = critic
        self.order = order
        self.use_factor = use_factor
        self.normalize_advantage = normalize_advantage
        if advantage_key is not None:
            _check_advantage_key(self.agents, advantage_key)
        self.advantage_key = "advantage" if advantage_key is None else advantage_key
        self.factor_key = factor_key
        self.advantage_keys = _unique(
            [k for t in self.agents.values() for k in _advantage_keys(t.loss, self.advantage_key)]
        )
        if use_factor and len(self.advantage_keys) != 1:
            raise ConfigError(
                f"the sequential factor needs one joint advantage shared by every agent, but the losses read "
                f"{self.advantage_keys}; use a centralised critic, or use_factor=False for independent learners"
            )
        # The order's generator also shuffles the minibatches: one stream, one checkpointed state.
        self.orders = AgentOrder(self.agent_names, order, seed)
        self.generator = self.orders.generator
        self.last_order: list[str] = []

    def draw_order(self) -> list[str]:
        """This iteration's agent order (consumes the generator when random)."""
        return self.orders.draw()

    def update(self, batch: TensorDictBase) -> TensorDict:
        """Runs one iteration of the scheme on ``batch``.

        Args:
            batch: on-policy data with the advantage, the agents' stored actions and
                log-probabilities, and whatever the losses read.

        Returns:
            Diagnostics: one sub-TensorDict per agent (its loss outputs, averaged,
            plus ``"factor_after"``, the mean factor once it has been updated) and
            ``"critic"``, and ``"order"``: the agents' indices in ``agents`` in the
            order they were updated (also in :attr:`last_order` by name).
        """
        batch = batch.copy()
        self._check_advantage_present(batch)
        if self.normalize_advantage:
            for key in self.advantage_keys:
                batch.set(key, normalize_advantage(batch.get(key)))
        advantage = batch.get(self.advantage_keys[0])
        # one joint factor per sample, [*B, 1], also when the advantage is per agent of a stack ([*B, n, 1])
        factor = torch.ones(*batch.batch_size, 1, dtype=advantage.dtype, device=advantage.device)
        order = self.draw_order()
        diagnostics = TensorDict({})
        for name in order:
            trainer = self.agents[name]
            batch.set(self.factor_key, factor)
            agent_diagnostics = trainer.train(batch, self.generator)
            if self.use_factor:
                factor = self._next_factor(trainer, batch, factor)
            agent_diagnostics.set("factor_after", factor.mean())
            diagnostics.set(name, agent_diagnostics)
        if isinstance(self.critic, Mapping):
            for name, critic in self.critic.items():
                diagnostics.set(("critic", name), critic.train(batch, self.generator))
        elif self.critic is not None:
            diagnostics.set("critic", self.critic.train(batch, self.generator))
        diagnostics.set("order", self.orders.indices(order))
        self.last_order = order
        return diagnostics

    def _check_advantage_present(self, batch: TensorDictBase) -> None:
        missing = [key for key in self.advantage_keys if batch.get(key, None) is None]
        if missing:
            raise ConfigError(
                f"the batch has no advantage at {missing[0]!r}, where the agents' losses read it: compute it before "
                "updater.update(batch), e.g. value_loss.compute_advantage(batch) or TorchRL's "
                "GAE(gamma=..., lmbda=..., value_network=critic)(batch); if your estimator writes it elsewhere, "
                "remap the losses with loss.set_keys(advantage=...)"
            )

    @staticmethod
    @torch.no_grad()
    def _next_factor(trainer: AgentTrainer, batch: TensorDictBase, factor: torch.Tensor) -> torch.Tensor:
        loss = trainer.loss
        with set_recurrent_mode(True):  # whole trajectories for recurrent policies
            new_log_prob = loss.log_prob(batch)
        stored = getattr(loss, "stored_log_prob", None)  # an agent of a stack reads its own entry
        old_log_prob = stored(batch) if stored is not None else batch.get(loss.tensor_keys.sample_log_prob)
        return factor * (new_log_prob - old_log_prob).exp().reshape(factor.shape)

    def state_dict(self) -> dict:
        """``{"generator": state}``, so that a resumed run draws the same orders."""
        return self.orders.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.orders.load_state_dict(state)


def _advantage_keys(loss: nn.Module, default: NestedKey) -> list[NestedKey]:
    """The advantage entries a loss reads (recursing into losses that combine others)."""
    keys = getattr(getattr(loss, "tensor_keys", None), "advantage", None)
    if keys is not None:
        return [keys]
    children = getattr(loss, "losses", None)
    if isinstance(children, Mapping):
        return [k for child in children.values() for k in _advantage_keys(child, default)]
    return [default]


def _check_advantage_key(agents: Mapping[str, AgentTrainer], advantage_key: NestedKey) -> None:
    """Refuses an updater ``advantage_key`` that a loss, reading its own key, would ignore."""
    for name, trainer in agents.items():
        for key in _advantage_keys(trainer.loss, advantage_key):
            if key != advantage_key:
                raise ConfigError(
                    f"SequentialUpdater(advantage_key={advantage_key!r}) but the loss of agent {name!r} reads the "
                    f"advantage at {key!r}: the loss's key wins, so remap it there, "
                    f"loss.set_keys(advantage={advantage_key!r}), and leave advantage_key out"
                )


def _unique(keys: Sequence[NestedKey]) -> list[NestedKey]:
    seen: list[NestedKey] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    return seen
