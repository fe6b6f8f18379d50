r"""The sequential update scheme: the one place where heterogeneous agents take turns.

Each iteration draws an order :math:`i_1, \dots, i_n` of the agents (a fresh random
permutation by default). Agent :math:`i_m` is trained on the batch with the factor

.. math::

    M^{i_{1:m}} = \prod_{j<m} \frac{\pi^{i_j}_{new}(a^{i_j} | o)}{\pi^{i_j}_{old}(a^{i_j} | o)},

which starts at 1 and is multiplied, after each agent's update and without
gradient, by that agent's new-over-old joint probability ratio on the whole batch.
The centralised critic is trained last, on the targets computed before the update.
(Zhong, Kuba et al., "Heterogeneous-Agent Reinforcement Learning", JMLR 2024,
Sec. 3.2; the factor is the estimator of their Proposition 11.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import set_recurrent_mode

from harl_torchrl.errors import ConfigError, require_positive
from harl_torchrl.trust_region import TrustRegionSettings, fisher_vector_product, trust_region_step

Order = Literal["random", "fixed"]


class AgentTrainer(Protocol):
    """What the updater needs from one agent's trainer."""

    loss: TensorDictModuleBase

    def train(self, batch: TensorDictBase, generator: torch.Generator) -> TensorDict:
        """Updates the agent's policy on ``batch``; returns detached diagnostics."""
        ...


def minibatch_epochs(
    loss_module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TensorDictBase,
    *,
    epochs: int,
    num_minibatches: int,
    max_grad_norm: float | None,
    generator: torch.Generator,
) -> TensorDict:
    """Runs ``epochs`` passes of shuffled minibatch gradient steps along the first dimension.

    Each step back-propagates the sum of the ``loss_*`` entries of
    ``loss_module(minibatch)``, clips the gradient norm of the optimiser's
    parameters to ``max_grad_norm`` (if not ``None``) and steps.

    Args:
        loss_module: returns a TensorDict with scalar ``loss_*`` entries.
        optimizer: holds exactly the parameters that may move.
        batch: samples (or sequence chunks ``[N, L]``) along its first dimension;
            the loss runs with ``set_recurrent_mode(True)``, which recurrent
            modules need on chunks and other modules ignore.
        epochs: passes over the batch.
        num_minibatches: minibatches per pass.
        max_grad_norm: gradient-norm clip, or ``None``.
        generator: source of the shuffling permutations.

    Returns:
        The mean of every scalar the loss reported over all steps, plus
        ``"grad_norm"`` (before clipping).
    """
    n = batch.shape[0]
    if num_minibatches > n:
        raise ConfigError(f"num_minibatches={num_minibatches} exceeds the batch size {n}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    totals: dict[str, torch.Tensor] = {}
    steps = 0
    for _ in range(epochs):
        permutation = torch.randperm(n, generator=generator).to(batch.device)
        for indices in permutation.chunk(num_minibatches):
            with set_recurrent_mode(True):
                out = loss_module(batch[indices])
            loss = sum(value for key, value in out.items() if key.startswith("loss_"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                grad_norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
            else:
                grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            optimizer.step()
            out.set("grad_norm", grad_norm)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + value.detach()
            steps += 1
    return TensorDict({key: value / steps for key, value in totals.items()})


class PolicyTrainer:
    """Trains one agent's policy loss with its own optimiser (HAPPO, HAA2C, MAPPO).

    Args:
        loss: the agent's :class:`~harl_torchrl.objectives.HAPolicyLoss`.
        optimizer: an optimiser over this agent's parameters only.
        epochs: passes over the batch per iteration (reference HAPPO: 5).
        num_minibatches: minibatches per pass (reference: 1).
        max_grad_norm: gradient-norm clip (reference: 10), or ``None``.
        chunk_length: for recurrent policies, cut the ``[*B, T]`` batch into
            sequence chunks of this many consecutive steps (reference: 10), which
            are shuffled and batched whole; ``None`` (default) shuffles single steps.
    """

    def __init__(
        self,
        loss: TensorDictModuleBase,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int = 5,
        num_minibatches: int = 1,
        max_grad_norm: float | None = 10.0,
        chunk_length: int | None = None,
    ) -> None:
        require_positive("epochs", epochs)
        require_positive("num_minibatches", num_minibatches)
        if max_grad_norm is not None:
            require_positive("max_grad_norm", max_grad_norm)
        if chunk_length is not None:
            require_positive("chunk_length", chunk_length)
        self.loss = loss
        self.optimizer = optimizer
        self.epochs = epochs
        self.num_minibatches = num_minibatches
        self.max_grad_norm = max_grad_norm
        self.chunk_length = chunk_length

    def train(self, batch: TensorDictBase, generator: torch.Generator) -> TensorDict:
        """Minibatch epochs on ``batch`` cut into single steps or sequence chunks."""
        return minibatch_epochs(
            self.loss,
            self.optimizer,
            sequence_chunks(batch, self.chunk_length),
            epochs=self.epochs,
            num_minibatches=self.num_minibatches,
            max_grad_norm=self.max_grad_norm,
            generator=generator,
        )


def sequence_chunks(batch: TensorDictBase, chunk_length: int | None) -> TensorDictBase:
    """``[*B, T]`` data as ``[N]`` single steps, or as ``[N, chunk_length]`` chunks of consecutive steps.

    Raises:
        ConfigError: ``T`` is not a multiple of ``chunk_length``.
    """
    if chunk_length is None:
        return batch.reshape(-1)
    steps = batch.shape[-1]
    if steps % chunk_length:
        raise ConfigError(
            f"the rollout has {steps} steps per environment, not a multiple of the chunk length {chunk_length}; "
            "make collector.rollout_steps a multiple of model.chunk_length"
        )
    return batch.reshape(*batch.shape[:-1], steps // chunk_length, chunk_length).reshape(-1, chunk_length)


class CriticTrainer(PolicyTrainer):
    """Trains the centralised value loss; first moves the value normaliser to the new targets.

    Same arguments as :class:`PolicyTrainer`, with a
    :class:`~harl_torchrl.objectives.CentralValueLoss` as ``loss``.
    """

    def train(self, batch: TensorDictBase, generator: torch.Generator) -> TensorDict:
        """Updates the value normaliser once, then runs the minibatch epochs."""
        self.loss.update_value_norm(batch)
        return super().train(batch, generator)


class TrustRegionTrainer:
    """Updates one agent's policy by one natural-gradient step (HATRPO).

    Uses the loss's ``surrogate(td)`` and ``mean_kl(td)`` (a
    :class:`~harl_torchrl.objectives.HATRPOLoss`) on the whole batch and
    :func:`~harl_torchrl.trust_region.trust_region_step`.

    Args:
        loss: the agent's :class:`~harl_torchrl.objectives.HATRPOLoss`.
        fisher_fraction: fraction of the batch's rows (its first dimension: with
            the collector's ``[envs, time]`` batches, whole trajectories, which keeps
            recurrent sequences intact), drawn afresh each step from the updater's
            generator, on which the Fisher-vector products of the
            conjugate gradient are computed. ``1.0`` (default) is the exact
            full-batch Fisher of the paper and the reference; a smaller value
            trades a noisier natural-gradient direction for a cheaper step (the
            usual TRPO subsampling). The line search's KL check and the surrogate
            always use the whole batch, so accepted steps stay inside the trust
            region either way.
        **settings: :class:`~harl_torchrl.trust_region.TrustRegionSettings` fields
            (``max_kl``, ``cg_iterations``, ``damping``, ``line_search_steps``,
            ``shrink``, ``accept_ratio``); the reference's defaults otherwise.

    Raises:
        ConfigError: ``fisher_fraction`` outside ``(0, 1]`` or a setting out of its range.
    """

    optimizer = None  # nothing to checkpoint: the step keeps no state

    def __init__(self, loss: TensorDictModuleBase, fisher_fraction: float = 1.0, **settings: float) -> None:
        if not 0.0 < fisher_fraction <= 1.0:
            raise ConfigError(f"fisher_fraction must be in (0, 1], got {fisher_fraction}")
        self.loss = loss
        self.fisher_fraction = float(fisher_fraction)
        self.settings = TrustRegionSettings(**settings)  # checked here, before training

    def _fisher_batch(self, batch: TensorDictBase, generator: torch.Generator) -> TensorDictBase:
        if self.fisher_fraction == 1.0:
            return batch
        rows = batch.shape[0]
        count = max(1, round(rows * self.fisher_fraction))
        return batch[torch.randperm(rows, generator=generator)[:count].to(batch.device)]

    def train(self, batch: TensorDictBase, generator: torch.Generator) -> TensorDict:
        """One trust-region step on the whole batch; returns its diagnostics."""
        params = [p for p in self.loss.actor_network.parameters() if p.requires_grad]
        fisher = getattr(self.loss, "fisher_product", None)
        with set_recurrent_mode(True):
            fisher_batch = self._fisher_batch(batch, generator)
            if fisher is not None:
                fisher_product = fisher(fisher_batch)
            elif fisher_batch is not batch:
                fisher_product = fisher_vector_product(self.loss.mean_kl(fisher_batch), params, damping=0.0)
            else:
                fisher_product = None  # trust_region_step differentiates mean_kl on the whole batch
            result = trust_region_step(
                params,
                lambda: self.loss.surrogate(batch),
                lambda: self.loss.mean_kl(batch),
                self.settings,
                fisher_product=fisher_product,
            )
            with torch.no_grad():
                out = self.loss(batch)
        out.update(
            {
                "accepted": torch.tensor(float(result.accepted)),
                "kl": torch.tensor(result.kl),
                "line_search_steps": torch.tensor(float(result.line_search_steps)),
                "expected_improvement": torch.tensor(result.expected_improvement),
                "actual_improvement": torch.tensor(result.actual_improvement),
                "step_norm": torch.tensor(result.step_norm),
            }
        )
        return out


def normalize_advantage(advantage: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(A - mean(A)) / (std(A) + eps)`` over the whole batch (the reference's normalisation)."""
    return (advantage - advantage.mean()) / (advantage.std() + eps)


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
            ``train(batch, generator)`` method (:class:`PolicyTrainer`).
        critic: the critic's trainer (:class:`CriticTrainer`), a mapping of several
            (decentralised critics, e.g. IPPO), or ``None`` when the caller trains it.
        order: ``"random"`` (default, the paper's scheme) or ``"fixed"``.
        seed: seed of the updater's generator (order and minibatch shuffles);
            ``None`` draws one from torch's global generator.
        use_factor: ``False`` keeps ``M = 1`` for every agent (simultaneous-update
            baselines such as MAPPO/IPPO run through the same loop).
        normalize_advantage: normalise the advantage once per iteration.
        advantage_key: where the advantage is read when a loss does not say
            (losses with ``tensor_keys.advantage`` name their own).
        factor_key: where the factor is written.

    Example:
        >>> import torch
        >>> from torchrl.data import Bounded
        >>> from tensordict import TensorDict
        >>> from harl_torchrl.modules import make_agent_actor
        >>> from harl_torchrl.objectives import HAPPOLoss
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
        advantage_key: NestedKey = "advantage",
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
        self.advantage_key = advantage_key
        self.factor_key = factor_key
        self.advantage_keys = _unique([k for t in self.agents.values() for k in _advantage_keys(t.loss, advantage_key)])
        if use_factor and len(self.advantage_keys) != 1:
            raise ConfigError(
                f"the sequential factor needs one joint advantage shared by every agent, but the losses read "
                f"{self.advantage_keys}; use a centralised critic, or use_factor=False for independent learners"
            )
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        self.generator = torch.Generator().manual_seed(seed)
        self.last_order: list[str] = []

    def draw_order(self) -> list[str]:
        """This iteration's agent order (consumes the generator when random)."""
        if self.order == "fixed":
            return list(self.agent_names)
        permutation = torch.randperm(len(self.agent_names), generator=self.generator)
        return [self.agent_names[i] for i in permutation.tolist()]

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
        if self.normalize_advantage:
            for key in self.advantage_keys:
                batch.set(key, normalize_advantage(batch.get(key)))
        factor = torch.ones_like(batch.get(self.advantage_keys[0]))
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
        diagnostics.set("order", torch.tensor([self.agent_names.index(n) for n in order]))
        self.last_order = order
        return diagnostics

    @staticmethod
    @torch.no_grad()
    def _next_factor(trainer: AgentTrainer, batch: TensorDictBase, factor: torch.Tensor) -> torch.Tensor:
        loss = trainer.loss
        with set_recurrent_mode(True):  # whole trajectories for recurrent policies
            new_log_prob = loss.log_prob(batch)
        old_log_prob = batch.get(loss.tensor_keys.sample_log_prob)
        return factor * (new_log_prob - old_log_prob).exp().reshape(factor.shape)

    def state_dict(self) -> dict:
        """The generator's state, so that a resumed run draws the same orders."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.generator.set_state(state["generator"])


def _advantage_keys(loss: nn.Module, default: NestedKey) -> list[NestedKey]:
    """The advantage entries a loss reads (recursing into losses that combine others)."""
    keys = getattr(getattr(loss, "tensor_keys", None), "advantage", None)
    if keys is not None:
        return [keys]
    children = getattr(loss, "losses", None)
    if isinstance(children, Mapping):
        return [k for child in children.values() for k in _advantage_keys(child, default)]
    return [default]


def _unique(keys: Sequence[NestedKey]) -> list[NestedKey]:
    seen: list[NestedKey] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    return seen


def agent_parameters_by_name(modules: Mapping[str, nn.Module]) -> dict[str, Sequence[nn.Parameter]]:
    """``{agent: list(parameters)}``; raises if two agents share a parameter tensor.

    The sequential scheme needs each agent to own its parameters (a shared tensor
    would move agents that are not being updated).
    """
    seen: dict[int, str] = {}
    result = {}
    for name, module in modules.items():
        params = list(module.parameters())
        for p in params:
            if id(p) in seen and seen[id(p)] != name:
                raise ConfigError(
                    f"agents {seen[id(p)]!r} and {name!r} share a parameter; the sequential scheme needs separate "
                    "per-agent parameters (use share_params only with a simultaneous-update baseline)"
                )
            seen[id(p)] = name
        result[name] = params
    return result
