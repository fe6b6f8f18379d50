"""What every heterogeneous-agent policy loss shares: keys, ratios, the factor, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential
from tensordict.utils import NestedKey
from torch import distributions as D
from torchrl.modules.models.multiagent import MultiAgentNetBase
from torchrl.objectives import LossModule

from harl_torchrl.errors import ConfigError

#: The reductions every loss of the package takes (the temperature loss: the first two only).
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def check_reduction(reduction: str, allowed: tuple[str, ...] = REDUCTIONS, *, loss: str | None = None) -> None:
    """Refuses a reduction the loss does not take, naming the ones it does.

    Args:
        reduction: the loss's ``reduction`` argument.
        allowed: the reductions it takes (default :data:`REDUCTIONS`).
        loss: named in the message when given (e.g. ``"the temperature loss"``).

    Raises:
        ConfigError: ``reduction`` not in ``allowed``.

    Example:
        >>> check_reduction("sum")
        >>> check_reduction("none", ("mean", "sum"), loss="the temperature loss")
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: reduction must be 'mean' or 'sum' for the temperature loss, got 'none'
    """
    if reduction not in allowed:
        names = [repr(name) for name in allowed]
        choices = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        where = f" for {loss}" if loss else ""
        raise ConfigError(f"reduction must be {choices}{where}, got {reduction!r}")


def reduce(value: torch.Tensor, reduction: str) -> torch.Tensor:
    """``value.mean()``, ``value.sum()`` or ``value`` itself for ``"none"`` (per sample).

    Example:
        >>> reduce(torch.tensor([1.0, 3.0]), "mean"), reduce(torch.tensor([1.0, 3.0]), "sum")
        (tensor(2.), tensor(4.))
    """
    if reduction == "mean":
        return value.mean()
    if reduction == "sum":
        return value.sum()
    return value


class NoValueEstimator:
    """Mixin of losses that read an advantage computed elsewhere: no value estimator of their own.

    TorchRL's :class:`~torchrl.objectives.LossModule` would answer
    ``make_value_estimator(...)`` and ``value_estimator`` with ``NotImplementedError:
    Unknown value type None``; these say where the estimator lives instead.
    """

    def _no_value_estimator(self) -> ConfigError:
        keys = getattr(self, "tensor_keys", None)
        where = f" at {keys.advantage!r}" if hasattr(keys, "advantage") else ""
        return ConfigError(
            f"{type(self).__name__} has no value estimator: the advantage it reads{where} comes from the "
            "centralised critic's loss. Build the estimator there, value_loss = CentralValueLoss(critic); "
            "value_loss.make_value_estimator(gamma=0.99, lmbda=0.95) (or pass it TorchRL's "
            "GAE(..., value_network=critic)), and call value_loss.compute_advantage(batch) before the policy update"
        )

    def make_value_estimator(self, value_type=None, **hyperparams):
        """Refused: see the class docstring (raises :class:`~harl_torchrl.errors.ConfigError`)."""
        raise self._no_value_estimator()

    @property
    def value_estimator(self):
        """Refused: see the class docstring (raises :class:`~harl_torchrl.errors.ConfigError`)."""
        raise self._no_value_estimator()

    @value_estimator.setter
    def value_estimator(self, value) -> None:
        raise self._no_value_estimator()

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator: the critic is trained by its own loss."""


class HAPolicyLoss(NoValueEstimator, LossModule):
    r"""Base class of the per-agent policy losses of the sequential scheme.

    For agent :math:`i_m` (the :math:`m`-th in this iteration's order) it provides
    the ratio :math:`r = \pi^{i_m}_\theta(a^{i_m}|o) / \pi^{i_m}_{old}(a^{i_m}|o)`
    (for multi-dimensional actions the *joint* ratio, the product over dimensions),
    the joint advantage :math:`A` and the factor

    .. math:: M^{i_{1:m}} = \prod_{j<m} \frac{\pi^{i_j}_{new}(a^{i_j}|o)}{\pi^{i_j}_{old}(a^{i_j}|o)},

    read from the batch and detached. Subclasses combine them into a surrogate.

    Keys (``set_keys`` remaps them):
        * ``advantage`` (``"advantage"``): joint advantage ``[*B, 1]``, already
          normalised by the caller (never re-normalised here: that would undo ``M``).
        * ``factor`` (``"factor"``): ``M``, same shape as the advantage.
        * ``action`` and ``sample_log_prob``: the agent's stored action and its
          log-probability under the behaviour policy; taken from the actor
          (``(agent, "action")``, ``(agent, "action_log_prob")``) by default.

    Stacked groups (TorchRL's layout, ``[*B, n, ...]`` entries): give the loss agent
    :math:`k`'s :class:`~harl_torchrl.sequential.AgentSliceActor` (its ``agent_index`` is
    :math:`k`). The loss then reads the group's stacked keys (e.g. ``("agents", "action")``,
    ``("agents", "action_log_prob")``) and selects entry :math:`k` of every per-agent
    quantity: the log-probabilities ``[*B, n]``, the entropy, the KL, and the advantage
    when it is per agent (``[*B, n, 1]``, as TorchRL's GAE on a per-agent value writes it);
    a joint ``[*B, 1]`` advantage and the factor are read as they are. A stacked policy
    given whole is refused (one loss per agent of the stack), and so is one whose
    parameters are shared across the stack (that is MAPPO).

    The class-level ``default_keys`` show TorchRL's generic ``"action"`` and
    ``"action_log_prob"``: an instance replaces them with its actor's keys, so read
    ``loss.tensor_keys`` for what it uses; ``set_keys(action=None)`` restores the
    actor's key, not the generic one.

    There is no value estimator here: ``make_value_estimator`` and
    ``value_estimator`` raise and point to
    :class:`~harl_torchrl.objectives.CentralValueLoss`, which computes the advantage.

    Args:
        actor_network: the agent's probabilistic actor.
        entropy_coeff: weight of the entropy bonus (0 disables it).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        normalize_advantage: must stay ``False``; present only to refuse it loudly.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring).

        ``action`` and ``sample_log_prob`` are placeholders: an instance takes them
        from its actor (e.g. ``("agent_0", "action")``).
        """

        advantage: NestedKey = "advantage"
        factor: NestedKey = "factor"
        action: NestedKey = "action"
        sample_log_prob: NestedKey = "action_log_prob"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        *,
        entropy_coeff: float = 0.01,
        reduction: str = "mean",
        normalize_advantage: bool = False,
    ) -> None:
        if normalize_advantage:
            raise ConfigError(
                f"{type(self).__name__} does not normalise the advantage: doing it per agent would rescale the "
                "factor-weighted advantage M*A and undo the sequential correction. Normalise once before the agent "
                "loop (SequentialUpdater(normalize_advantage=True) does) and pass normalize_advantage=False."
            )
        check_reduction(reduction)
        if entropy_coeff < 0:
            raise ConfigError(f"entropy_coeff must be >= 0, got {entropy_coeff}")
        super().__init__()
        _refuse_whole_stack(type(self).__name__, actor_network)
        self.actor_network = actor_network
        #: The agent's position in a stacked group (``None``: a group of its own).
        self.agent_index: int | None = getattr(actor_network, "agent_index", None)
        self.reduction = reduction
        self.register_buffer("entropy_coeff", torch.tensor(float(entropy_coeff)))
        self._actor_keys: dict[str, NestedKey] = {}
        log_prob_keys = getattr(actor_network, "log_prob_keys", None)
        sample_keys = getattr(actor_network, "dist_sample_keys", None)
        if log_prob_keys and sample_keys:
            self._actor_keys = {"action": sample_keys[0], "sample_log_prob": log_prob_keys[0]}
            self.set_keys(**self._actor_keys)

    def set_keys(self, **kwargs: NestedKey | None) -> None:
        """TorchRL's ``set_keys``; ``None`` restores the actor's action keys, not the class's generic ones.

        Example:
            >>> from torchrl.data import Bounded
            >>> from harl_torchrl.modules import make_agent_actor
            >>> from harl_torchrl.objectives import HAPPOLoss
            >>> loss = HAPPOLoss(make_agent_actor("agent_0", 4, Bounded(-1.0, 1.0, shape=(2,))))
            >>> HAPPOLoss.default_keys.action, loss.tensor_keys.action
            ('action', ('agent_0', 'action'))
            >>> loss.set_keys(action=("agent_0", "other"))
            >>> loss.set_keys(action=None)
            >>> loss.tensor_keys.action
            ('agent_0', 'action')
        """
        for name, key in getattr(self, "_actor_keys", {}).items():
            if name in kwargs and kwargs[name] is None:
                kwargs[name] = key
        super().set_keys(**kwargs)

    @property
    def in_keys(self) -> list[NestedKey]:
        """Entries read by :meth:`forward`."""
        keys = [self.tensor_keys.advantage, self.tensor_keys.factor, self.tensor_keys.action]
        keys.append(self.tensor_keys.sample_log_prob)
        return keys + [k for k in self.actor_network.in_keys if k not in keys]

    # ------------------------------------------------------------------ pieces
    def distribution(self, tensordict: TensorDictBase) -> D.Distribution:
        """The agent's current action distribution on ``tensordict`` (not modified)."""
        return self.actor_network.get_dist(tensordict.copy())

    def log_prob(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Joint log-probability ``[*B]`` of the stored actions under the current policy."""
        action = tensordict.get(self.tensor_keys.action)
        return self.select_agent(self.distribution(tensordict).log_prob(action))

    def stored_log_prob(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The behaviour policy's log-probability ``[*B]`` of the stored actions (this agent's entry)."""
        return self.select_agent(tensordict.get(self.tensor_keys.sample_log_prob))

    def select_agent(self, value: torch.Tensor) -> torch.Tensor:
        """Entry :attr:`agent_index` of a per-agent ``[*B, n]`` quantity (unchanged for a group of its own)."""
        return value if self.agent_index is None else value[..., self.agent_index]

    def _inputs(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advantage, detached factor and behaviour log-probability, shape-checked."""
        advantage = tensordict.get(self.tensor_keys.advantage, None)
        if advantage is None:
            raise KeyError(
                f"{type(self).__name__} needs the advantage at {self.tensor_keys.advantage!r}; compute it first "
                "(e.g. with CentralValueLoss.compute_advantage, or TorchRL's GAE(value_network=critic)) "
                "or remap it with set_keys(advantage=...)"
            )
        prev_log_prob = self.stored_log_prob(tensordict)
        if self.agent_index is not None and advantage.ndim == prev_log_prob.ndim + 2:
            advantage = advantage[..., self.agent_index, :]  # per-agent [*B, n, 1]: this agent's column
        factor = tensordict.get(self.tensor_keys.factor, None)
        if factor is None:
            raise KeyError(
                f"{type(self).__name__} needs the sequential factor M at {self.tensor_keys.factor!r}. "
                "SequentialUpdater writes it; for the first agent (or a single agent) it is all ones: "
                "td.set('factor', torch.ones_like(td['advantage']))"
            )
        if factor.shape != advantage.shape:
            raise ValueError(
                f"the factor has shape {tuple(factor.shape)} but the advantage has shape {tuple(advantage.shape)}; "
                "they must match exactly (a broadcast would silently mix samples)"
            )
        if prev_log_prob.requires_grad:
            raise RuntimeError(f"the stored log-probability {self.tensor_keys.sample_log_prob!r} requires grad")
        if advantage.shape != (*prev_log_prob.shape, 1):
            raise ValueError(
                f"the advantage must have shape [*B, 1] matching the log-probability [*B] = "
                f"{tuple(prev_log_prob.shape)}, got {tuple(advantage.shape)}"
            )
        return advantage.detach(), factor.detach(), prev_log_prob

    def _log_ratio(
        self, tensordict: TensorDictBase, prev_log_prob: torch.Tensor
    ) -> tuple[torch.Tensor, D.Distribution]:
        """``log r`` with shape ``[*B, 1]`` and the current distribution."""
        dist = self.distribution(tensordict)
        action = tensordict.get(self.tensor_keys.action)
        if action.requires_grad:
            raise RuntimeError(f"the stored action {self.tensor_keys.action!r} requires grad")
        return (self.select_agent(dist.log_prob(action)) - prev_log_prob).unsqueeze(-1), dist

    def _entropy_terms(self, dist: D.Distribution, td_out: TensorDict, tensordict: TensorDictBase) -> None:
        entropy = self.select_agent(distribution_entropy(dist)).unsqueeze(-1)
        td_out.set("entropy", entropy.detach().mean())
        if float(self.entropy_coeff) != 0.0:
            td_out.set("loss_entropy", self._reduce_loss(-self.entropy_coeff * entropy, tensordict))

    @staticmethod
    def _ratio_diagnostics(log_ratio: torch.Tensor, factor: torch.Tensor, td_out: TensorDict) -> None:
        with torch.no_grad():
            ratio = log_ratio.exp()
            # k3 estimator of KL(pi_old || pi_new): unbiased and non-negative
            td_out.set("kl_approx", ((ratio - 1) - log_ratio).mean())
            weights = (ratio * factor).flatten()
            td_out.set("ESS", weights.sum() ** 2 / (weights.numel() * (weights**2).sum()).clamp_min(1e-12))
            td_out.set("ratio_mean", ratio.mean())
            td_out.set("ratio_max", ratio.max())
            td_out.set("factor_mean", factor.mean())
            td_out.set("factor_min", factor.min())
            td_out.set("factor_max", factor.max())


def distribution_entropy(dist: D.Distribution) -> torch.Tensor:
    r"""``dist.entropy()``, or the one-sample estimate :math:`-\log\pi(\tilde a)`, :math:`\tilde a \sim \pi`.

    The estimate is taken where the distribution has no closed-form entropy, e.g. TorchRL's
    ``TanhNormal`` (the policy of its multi-agent examples). As in TorchRL's
    :class:`~torchrl.objectives.ClipPPOLoss`, it draws one reparameterised sample (from
    torch's global generator), so it carries a gradient. Distributions with an entropy
    (every one the library builds) use it.

    Example:
        >>> distribution_entropy(D.Normal(torch.zeros(2), torch.ones(2))).shape
        torch.Size([2])
    """
    try:
        return dist.entropy()
    except NotImplementedError:
        sample = dist.rsample() if dist.has_rsample else dist.sample()
        return -dist.log_prob(sample)


def _refuse_whole_stack(loss: str, actor: torch.nn.Module) -> None:
    """Refuses a stacked TorchRL policy (several agents in one network) given whole to a per-agent loss."""
    if getattr(actor, "agent_index", None) is not None:
        return
    for module in actor.modules():
        if isinstance(module, MultiAgentNetBase) and module.n_agents > 1:
            if module.share_params:
                raise ConfigError(
                    f"{loss} got a policy whose {type(module).__name__} shares its parameters across its "
                    f"{module.n_agents} agents (share_params=True): that is MAPPO (one policy for every agent, updated "
                    "together), not a heterogeneous-agent method: train it with TorchRL's MAPPOLoss/ClipPPOLoss, or "
                    "build the policy with MultiAgentMLP(share_params=False) for HAPPO"
                )
            raise ConfigError(
                f"{loss} got a stacked policy of {module.n_agents} agents; the sequential scheme updates each agent "
                "of the stack on its own, with its own loss and optimiser: stack = "
                "harl_torchrl.sequential.AgentStack(policy), then one loss per agent, "
                f"{{name: {loss}(actor) for name, actor in stack.actors.items()}}"
            )
