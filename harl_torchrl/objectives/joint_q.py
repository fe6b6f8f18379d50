r"""The centralised (twin) joint-action Q loss of HADDPG, HATD3, HASAC and the MA baselines.

For a batch of n-step transitions :math:`(s, a^{1..n}, R, s', k, d)` with
:math:`R = \sum_{j<k} \gamma^j r_{t+j}` and :math:`d` the *termination* flag of the
bootstrap state :math:`s'` (truncation by a time limit is not termination),

.. math::

    y = R + \gamma^{k} (1 - d) \Big( \min_{j} Q'_{j}(s', a'^{1..n}) + b(s') \Big),
    \qquad
    \mathcal{L} = \sum_{j} \operatorname{mean}\big( (Q_j(s, a^{1..n}) - y)^2 \big),

where :math:`Q'_j` are the target networks (Polyak-averaged copies), :math:`a'` is
produced by a *next-action producer* (DDPG/TD3: the target actors, TD3 adding clipped
smoothing noise, see :class:`~harl_torchrl.objectives.TargetActions`; HASAC: the current
actors' samples) and :math:`b` an optional bonus the producer writes (HASAC:
:math:`-\alpha \sum_i \log \pi^i(a'^i | o'^i)`; zero otherwise).

How this differs from TorchRL's ``TD3Loss``/``DDPGLoss``/``SACLoss`` value halves, and why:

* one critic over the *joint* action of every agent (its ``in_keys`` hold every
  ``(agent, "action")``), not over one action key: the HA scheme needs
  :math:`Q(s, a^1..a^n)`;
* the next actions come from a pluggable producer over all agents rather than from one
  actor inside the loss, so that the deterministic (target actors) and the soft
  (current actors, log-probabilities) families share this loss;
* the actor halves live in separate per-agent losses driven by
  :class:`~harl_torchrl.sequential.SequentialActorStep`, not in the same module, because
  agents are updated one after another against each other's new actions;
* the discount exponent is read from the batch (``steps_to_next_obs``, TorchRL's
  multi-step key), so n-step windows cut short by an episode end bootstrap with the
  right power of :math:`\gamma`;
* the regression defaults to the reference's squared error (``TD3Loss`` defaults to
  ``smooth_l1``).

Otherwise it is the same computation: with one agent on a ``[-1, 1]`` box (where scaled
and absolute noise coincide), ``JointQLoss`` with
:class:`~harl_torchrl.objectives.TargetActions` gives exactly ``TD3Loss.value_loss``
(``loss_function="l2"``) for the same networks and noise draws
(``tests/objectives/test_joint_q_torchrl_equivalence.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule
from torchrl.objectives.utils import distance_loss

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.q_critics import JointQCritic
from harl_torchrl.objectives.binding import ParameterBinding
from harl_torchrl.objectives.common import check_reduction, reduce

NextActions = Callable[[TensorDictBase], TensorDictBase]


@contextlib.contextmanager
def frozen_parameters(
    module: torch.nn.Module, params: Sequence[torch.Tensor] | None = None
) -> Iterator[torch.nn.Module]:
    """Inside the block, ``module``'s parameters do not require gradient; restored on exit.

    What the actor losses evaluate the shared critic under: gradients reach the actions
    they feed it but nothing accumulates in the critic's ``.grad`` (a graph built inside
    the block never records the critic's parameters, so a later ``backward`` skips them).
    Flipping the flags costs microseconds, where swapping in detached copies
    (``TensorDict.from_module(...).detach().to_module(...)``) cost about a millisecond
    per call on the 3-agent MPE actor step.

    Args:
        module: the network to freeze.
        params: its parameters, listed once by a caller that freezes it often (listing
            them costs about 20 us for the MPE twin critic); default: listed here.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with frozen_parameters(net):
        ...     y = net(x).sum()
        >>> y.backward()
        >>> net.weight.grad is None, x.grad is not None, net.weight.requires_grad
        (True, True, True)
    """
    params = [p for p in (module.parameters() if params is None else params) if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield module
    finally:
        for param in params:
            param.requires_grad_(True)


def n_step_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float | torch.Tensor,
    steps: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The n-step TD target :math:`y = R + \gamma^{k} (1 - d)\, V'` of every Q loss of the package.

    :math:`R` the (n-step) return, :math:`d` the termination flag of the bootstrap state
    (truncation is not termination), :math:`V'` the bootstrap value and :math:`k` the
    steps to that state (TorchRL's ``steps_to_next_obs``; absent: :math:`\gamma^1`).

    Args:
        reward: :math:`R`, any shape ``S`` (``[*B, 1]`` or ``[*B]``).
        terminated: :math:`d`, shape ``S`` (bool or float).
        next_value: :math:`V'`, shape ``S``.
        gamma: the discount (a float or a 0-dim tensor).
        steps: :math:`k`, reshaped to ``S``, or ``None`` for one step.

    Returns:
        :math:`y`, shape ``S``, in ``reward``'s dtype.

    Example:
        >>> reward, value = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])
        >>> n_step_target(reward, torch.tensor([False, True]), value, 0.5, steps=torch.tensor([2, 2]))
        tensor([1.5000, 1.0000])
    """
    not_terminal = 1.0 - terminated.to(reward.dtype)
    discount = gamma if steps is None else gamma ** steps.reshape(reward.shape).to(reward.dtype)
    return reward + discount * not_terminal * next_value


def _next(key: NestedKey) -> tuple[str, ...]:
    return ("next", *((key,) if isinstance(key, str) else key))


class JointQLoss(LossModule):
    r"""Regression of the centralised (twin) Q critic onto n-step TD targets (see the module docstring).

    Keys (``set_keys`` remaps them):
        * ``reward`` (``"reward"``, read at ``("next", reward)``): the n-step team
          return :math:`R`, ``[*B, 1]``.
        * ``terminated`` (``"terminated"``, read at ``("next", terminated)``): whether
          the bootstrap state is terminal, ``[*B, 1]``. ``done``/``truncated`` are never
          read: a time-limit truncation bootstraps.
        * ``steps_to_next_obs`` (``"steps_to_next_obs"``): :math:`k`, ``[*B]`` or
          ``[*B, 1]``; absent means 1.
        * ``value`` (the critic's ``out_key``, ``"state_action_value"``): where the
          critic writes :math:`Q_j`, ``[*B, num_qvalue]``.
        * ``value_bonus`` (``"value_bonus"``, read in the next-step TensorDict after the
          producer ran): :math:`b(s')`, ``[*B, 1]``; absent means 0.

    The critic reads its inputs at the root (``s``, the stored joint action) and, for
    the target, inside ``"next"`` (``s'``, and the next actions the producer writes
    there as ``(agent, "action")``). The input TensorDict is not modified.

    Target parameters: the critic goes through TorchRL's
    ``convert_to_functional(..., create_target_params=True)``; update them with
    ``SoftUpdate(loss, tau=0.005)``. The producer is *not* a registered submodule (its
    parameters, e.g. the actors', must stay out of an optimiser built on
    ``loss.parameters()``): checkpoint and move it on its own.

    Args:
        critic: the :class:`~harl_torchrl.modules.JointQCritic`.
        next_actions: callable on the next-step TensorDict (a shallow copy of
            ``td["next"]``), run without gradient, that writes every agent's next action
            (and optionally ``value_bonus``) and returns it; ``None`` only for
            terminal-only data (then the next actions must already be in ``"next"``).
        gamma: discount factor.
        loss_function: ``"l2"`` (the reference's MSE), ``"smooth_l1"`` or ``"l1"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample, summed over heads).

    Outputs: ``loss_qvalue``; detached ``td_error`` (mean :math:`|Q_1 - y|`), ``q_value``
    (mean :math:`Q_1`), ``target_value`` (mean :math:`y`).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.objectives import SoftUpdate
        >>> critic = JointQCritic(["state"], 2, [("a", "action")], [1], num_qvalue=2)
        >>> def zero_actions(next_td):
        ...     next_td.set(("a", "action"), torch.zeros(*next_td.batch_size, 1))
        ...     return next_td
        >>> loss = JointQLoss(critic, zero_actions, gamma=0.9)
        >>> updater = SoftUpdate(loss, tau=0.005)
        >>> td = TensorDict({"state": torch.randn(4, 2), ("a", "action"): torch.rand(4, 1),
        ...     "next": {"state": torch.randn(4, 2), "reward": torch.ones(4, 1),
        ...              "terminated": torch.ones(4, 1, dtype=torch.bool)}}, [4])
        >>> loss.target_value(td).squeeze(-1)  # terminal: y = R
        tensor([1., 1., 1., 1.])
        >>> sorted(k for k in loss(td).keys() if k.startswith("loss_"))
        ['loss_qvalue']
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring)."""

        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        value: NestedKey = "state_action_value"
        value_bonus: NestedKey = "value_bonus"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    qvalue_network: JointQCritic
    qvalue_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(
        self,
        critic: JointQCritic,
        next_actions: NextActions | None,
        *,
        gamma: float = 0.99,
        loss_function: str = "l2",
        reduction: str = "mean",
    ) -> None:
        check_reduction(reduction)
        if loss_function not in ("l2", "smooth_l1", "l1"):
            raise ConfigError(f"loss_function must be 'l2', 'smooth_l1' or 'l1', got {loss_function!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
        super().__init__()
        self.convert_to_functional(critic, "qvalue_network", create_target_params=True)
        # the critic on its live and target parameters, without a swap per call (see objectives.binding)
        self._live_critic = ParameterBinding(self.qvalue_network)
        self._target_critic = ParameterBinding(self.qvalue_network)
        self.__dict__["next_actions"] = next_actions  # not a submodule: see the class docstring
        self.loss_function = loss_function
        self.reduction = reduction
        device = next(iter(critic.parameters())).device
        self.register_buffer("gamma", torch.tensor(float(gamma), device=device))
        self.set_keys(value=critic.out_keys[0])

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator: the n-step target is computed here from the batch."""

    def _apply(self, *args, **kwargs):
        """Moves or casts the parameters (``.to``, ``.double``, ...); the critic is bound to them anew."""
        self._reset_bindings()
        return super()._apply(*args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        """Loads this module's own entries; the critic is bound anew (a load may replace tensors)."""
        self._reset_bindings()
        super()._load_from_state_dict(*args, **kwargs)

    def _reset_bindings(self) -> None:
        for name in ("_live_critic", "_target_critic"):
            if name in self.__dict__:  # not yet while the constructor runs
                self.__dict__[name].reset()

    @property
    def in_keys(self) -> list[NestedKey]:
        """Entries read by :meth:`forward` (besides the next-action producer's inputs)."""
        keys = self.tensor_keys
        return [
            *self.qvalue_network.in_keys,
            _next(keys.reward),
            _next(keys.terminated),
            keys.steps_to_next_obs,
            *[_next(k) for k in self.qvalue_network.state_keys],
        ]

    @torch.no_grad()
    def target_value(self, tensordict: TensorDictBase) -> torch.Tensor:
        r""":math:`y`, ``[*B, 1]``, without gradient (the input is not modified)."""
        keys = self.tensor_keys
        next_td = tensordict.get("next").copy()
        if self.next_actions is not None:
            next_td = self.next_actions(next_td)
        target_critic = self._target_critic.module(self.target_qvalue_network_params)
        next_q = target_critic(next_td).get(keys.value)
        next_value = next_q.min(dim=-1, keepdim=True).values
        bonus = next_td.get(keys.value_bonus, None)
        if bonus is not None:
            next_value = next_value + bonus.reshape(next_value.shape)
        return n_step_target(
            tensordict.get(_next(keys.reward)),
            tensordict.get(_next(keys.terminated)),
            next_value,
            self.gamma,
            tensordict.get(keys.steps_to_next_obs, None),
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """``loss_qvalue`` and detached diagnostics on a batch of transitions."""
        target = self.target_value(tensordict)
        critic = self._live_critic.module(self.qvalue_network_params)
        if isinstance(critic, JointQCritic):
            q = critic.values(tensordict)  # reads the batch, writes nothing: no copy of it
        else:
            q = critic(tensordict.copy()).get(self.tensor_keys.value)
        per_sample = distance_loss(q, target.expand_as(q), self.loss_function).sum(-1, keepdim=True)
        with torch.no_grad():
            diagnostics = {
                "td_error": (q[..., :1] - target).abs().mean(),
                "q_value": q[..., :1].mean(),
                "target_value": target.mean(),
            }
        return TensorDict({"loss_qvalue": reduce(per_sample, self.reduction), **diagnostics})
