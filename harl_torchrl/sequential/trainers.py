"""Per-agent trainers of the on-policy scheme: minibatch epochs, a trust-region step, and their helpers."""

from __future__ import annotations

from typing import Protocol

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.modules import set_recurrent_mode

from harl_torchrl.errors import ConfigError, require_positive
from harl_torchrl.sequential.optim import optimizer_parameters, optimizer_step
from harl_torchrl.sequential.stacked import check_agent_optimizer
from harl_torchrl.trust_region import TrustRegionSettings, fisher_vector_product, trust_region_step


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
    params = optimizer_parameters(optimizer)
    totals: dict[str, torch.Tensor] = {}
    steps = 0
    for _ in range(epochs):
        permutation = torch.randperm(n, generator=generator).to(batch.device)
        for indices in permutation.chunk(num_minibatches):
            # One minibatch is the whole batch, whose order does not change the gradient: indexing
            # would copy every entry of every agent (on Humanoid 17x1, 2/3 of the update's time).
            # The permutation is still drawn so that the generator's stream is the same either way.
            minibatch = batch if num_minibatches == 1 else batch[indices]
            with set_recurrent_mode(True):
                out = loss_module(minibatch)
            loss = sum(value for key, value in out.items() if key.startswith("loss_"))
            out.set("grad_norm", optimizer_step(loss, optimizer, params, max_grad_norm))
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
        check_agent_optimizer(loss, optimizer)  # an agent of a stack: its own views only
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
