r"""A minimal plain-PyTorch HATD3 gradient step: the reference ``benchmark_gradient_step.py`` times ours against.

Plain tensors, ``nn.Linear`` and ``torch.optim.Adam``; no TensorDict, no TorchRL. The same
math as :class:`harl_torchrl.off_policy.OffPolicyUpdater` with the HATD3 pieces
(``algo=hatd3``, the reference's plain MLPs):

* **critic step** (every gradient step): every agent's target action
  :math:`a'^i = \operatorname{clamp}(\mu'^i(o'^i) + \operatorname{clamp}(\epsilon, -c h, c h), l, u)`,
  :math:`\epsilon \sim \mathcal{N}(0, (\sigma h)^2)` with :math:`h` the box's half-range
  (drawn agent after agent from torch's global generator, as ``TargetActions`` does);
  :math:`y = R + \gamma^k (1 - d) \min_j Q'_j(s', a')`; one Adam step on
  :math:`\sum_j \operatorname{mean}(Q_j(s, a) - y)^2`;
* **actor step** (every ``policy_freq``-th critic step): every agent's current action
  once, without gradient; an order drawn by ``torch.randperm`` from a generator seeded
  with ``seed`` (as :class:`~harl_torchrl.sequential.AgentOrder`); for each agent in
  that order one Adam step on :math:`-\operatorname{mean} Q_1(s, \hat a)` with its own
  entry of the joint action recomputed with gradient (the critic frozen), then its
  action recomputed by the updated actor for the agents that follow;
* **Polyak update** of the target critics and actors (weight ``tau``) after each
  actor step.

Replay is a dict of contiguous ``[capacity, ...]`` tensors sampled by one
``torch.randint`` and one ``index_select`` per tensor (:class:`TensorReplay`).
``tests/recipes/test_minimal_hatd3.py`` checks that, from the same parameters and batch,
this computes what ours computes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class Transitions:
    """A batch of one-step or n-step transitions as plain tensors (``B`` rows).

    Attributes:
        state: :math:`s`, ``[B, S]``.
        observations: every agent's :math:`o^i`, ``[B, O_i]``, in agent order.
        actions: every agent's stored :math:`a^i`, ``[B, A_i]``.
        reward: the (n-step) team return :math:`R`, ``[B, 1]``.
        next_state: :math:`s'`, ``[B, S]``.
        next_observations: every agent's :math:`o'^i`.
        terminated: whether :math:`s'` is terminal, ``[B, 1]`` (bool).
        steps: the discount exponent :math:`k`, ``[B]``.
    """

    state: torch.Tensor
    observations: list[torch.Tensor]
    actions: list[torch.Tensor]
    reward: torch.Tensor
    next_state: torch.Tensor
    next_observations: list[torch.Tensor]
    terminated: torch.Tensor
    steps: torch.Tensor


class TensorReplay:
    """Uniform replay with replacement over contiguous tensors: one index draw, one ``index_select`` each.

    Args:
        tensors: ``{name: [N, ...] tensor}``; names ``state``, ``next_state``, ``reward``,
            ``terminated``, ``steps`` and ``observation_<i>``, ``next_observation_<i>``,
            ``action_<i>`` for the agents ``i = 0..n-1``.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = {name: t.contiguous() for name, t in tensors.items()}
        self.size = len(next(iter(self.tensors.values())))
        self.num_agents = sum(name.startswith("action_") for name in self.tensors)

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` rows drawn uniformly with replacement (torch's global generator)."""
        index = torch.randint(0, self.size, (batch_size,))
        rows = {name: t.index_select(0, index) for name, t in self.tensors.items()}
        agents = range(self.num_agents)
        return Transitions(
            state=rows["state"],
            observations=[rows[f"observation_{i}"] for i in agents],
            actions=[rows[f"action_{i}"] for i in agents],
            reward=rows["reward"],
            next_state=rows["next_state"],
            next_observations=[rows[f"next_observation_{i}"] for i in agents],
            terminated=rows["terminated"],
            steps=rows["steps"],
        )


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> nn.Sequential:
    """``(Linear -> ReLU) x L -> Linear`` with PyTorch's default initialisation."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_features, size), nn.ReLU()]
        in_features = size
    return nn.Sequential(*layers, nn.Linear(in_features, out_features))


class MinimalHATD3:
    """HATD3's networks, optimisers and one gradient step (see the module docstring).

    Args:
        observation_sizes: every agent's observation size.
        lows: every agent's action box lower bounds, ``[A_i]``.
        highs: the upper bounds.
        state_size: the critic's state size.
        hidden_sizes: actor and critic widths.
        gamma: discount.
        tau: Polyak weight.
        actor_lr: Adam learning rate of each actor.
        critic_lr: Adam learning rate of the twin critic.
        policy_noise: target smoothing std, in half-ranges.
        noise_clip: its clip, in half-ranges.
        policy_freq: critic steps per actor step.
        seed: seed of the agent-order generator.
    """

    def __init__(
        self,
        observation_sizes: Sequence[int],
        lows: Sequence[torch.Tensor],
        highs: Sequence[torch.Tensor],
        state_size: int,
        *,
        hidden_sizes: Sequence[int] = (128, 128),
        gamma: float = 0.99,
        tau: float = 0.005,
        actor_lr: float = 5e-4,
        critic_lr: float = 1e-3,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_freq: int = 2,
        seed: int = 0,
    ) -> None:
        self.lows = [torch.as_tensor(low, dtype=torch.float32) for low in lows]
        self.highs = [torch.as_tensor(high, dtype=torch.float32) for high in highs]
        self.centers = [(h + low) / 2 for low, h in zip(self.lows, self.highs, strict=True)]
        self.half_ranges = [(h - low) / 2 for low, h in zip(self.lows, self.highs, strict=True)]
        sizes = [len(low) for low in self.lows]
        self.actors = nn.ModuleList(
            mlp(obs, hidden_sizes, size) for obs, size in zip(observation_sizes, sizes, strict=True)
        )
        self.critics = nn.ModuleList(mlp(state_size + sum(sizes), hidden_sizes, 1) for _ in range(2))
        self.target_actors = copy.deepcopy(self.actors).requires_grad_(False)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizers = [torch.optim.Adam(a.parameters(), lr=actor_lr, foreach=True) for a in self.actors]
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=critic_lr, foreach=True)
        self.gamma, self.tau = gamma, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.generator = torch.Generator().manual_seed(seed)
        self.critic_steps = 0
        self._sources = [*self.critics.parameters(), *self.actors.parameters()]
        self._targets = [*self.target_critics.parameters(), *self.target_actors.parameters()]

    def act(self, i: int, observation: torch.Tensor, target: bool = False) -> torch.Tensor:
        r"""Agent ``i``'s deterministic action :math:`c + h \tanh(f(o))` (its target actor's with ``target``)."""
        net = (self.target_actors if target else self.actors)[i]
        return self.centers[i] + self.half_ranges[i] * torch.tanh(net(observation))

    def step(self, batch: Transitions) -> dict[str, torch.Tensor]:
        """One critic step and, every ``policy_freq``-th, the actor step and the Polyak update.

        Returns:
            ``{"critic": critic loss}`` and, on actor steps, ``{"actor_<i>": agent i's loss}``
            (detached).
        """
        with torch.no_grad():
            next_actions = []
            for i, next_observation in enumerate(batch.next_observations):
                action = self.act(i, next_observation, target=True)
                half = self.half_ranges[i]
                noise = torch.randn_like(action) * (self.policy_noise * half)
                limit = self.noise_clip * half
                action = action + noise.clamp(-limit, limit)
                next_actions.append(action.clamp(self.lows[i], self.highs[i]))
            x = torch.cat([batch.next_state, *next_actions], dim=-1)
            next_q = torch.min(self.target_critics[0](x), self.target_critics[1](x))
            not_terminal = 1.0 - batch.terminated.float()
            y = batch.reward + self.gamma ** batch.steps.unsqueeze(-1).float() * not_terminal * next_q
        x = torch.cat([batch.state, *batch.actions], dim=-1)
        critic_loss = F.mse_loss(self.critics[0](x), y) + F.mse_loss(self.critics[1](x), y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        losses = {"critic": critic_loss.detach()}
        self.critic_steps += 1
        if self.critic_steps % self.policy_freq:
            return losses
        with torch.no_grad():
            actions = [self.act(i, obs) for i, obs in enumerate(batch.observations)]
        order = torch.randperm(len(self.actors), generator=self.generator).tolist()
        self.critics[0].requires_grad_(False)
        for position, i in enumerate(order):
            joint = list(actions)
            joint[i] = self.act(i, batch.observations[i])
            actor_loss = -self.critics[0](torch.cat([batch.state, *joint], dim=-1)).mean()
            self.actor_optimizers[i].zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizers[i].step()
            losses[f"actor_{i}"] = actor_loss.detach()
            if position < len(order) - 1:
                with torch.no_grad():
                    actions[i] = self.act(i, batch.observations[i])
        self.critics[0].requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(self._targets, self._sources, self.tau)
        return losses


# --- Building the minimal version from ours (same shapes, settings and parameters) ---------------


def _flat_parameters(module: nn.Module) -> list[torch.Tensor]:
    """The parameters of an ``mlp`` or of one of our ``trunk`` + ``out`` networks, in layer order."""
    return list(module.parameters())


def _target_leaves(params, module: nn.Module, prefix: tuple[str, ...] = ()) -> list[torch.Tensor]:
    """The target copies (a TensorDict shaped like ``module``) of ``module``'s parameters, in the same order."""
    return [params.get((*prefix, *name.split("."))) for name, _ in module.named_parameters()]


def from_components(components, *, seed: int) -> MinimalHATD3:
    """A :class:`MinimalHATD3` with the shapes, settings and current parameters of our HATD3 components.

    Args:
        components: :class:`~harl_torchrl.off_policy.OffPolicyComponents` of ``algo=hatd3``
            (one group per agent, the reference's plain MLPs, a ``"state"`` critic input).
        seed: seed of the minimal version's order generator (ours: the run's seed).
    """
    algo, updater = components.algo, components.updater
    agents = list(components.actors)
    nets = [components.actors[a].module for a in agents]
    critic = components.critic
    if critic.state_keys != ["state"] or len(critic.nets) != 2:
        raise ValueError("the minimal HATD3 reads a 'state' critic input and a twin critic")
    hidden = [m.out_features for m in nets[0].trunk if isinstance(m, nn.Linear)]
    minimal = MinimalHATD3(
        [net.trunk[0].in_features for net in nets],
        [net.center - net.half_range for net in nets],
        [net.center + net.half_range for net in nets],
        critic.nets[0].trunk[0].in_features - sum(net.out.out_features for net in nets),
        hidden_sizes=hidden,
        gamma=algo.gamma,
        tau=algo.tau,
        actor_lr=algo.actor_lr,
        critic_lr=algo.critic_lr,
        policy_noise=algo.policy_noise,
        noise_clip=algo.noise_clip,
        policy_freq=algo.policy_freq,
        seed=seed,
    )
    critic_loss = updater.critic_loss
    target_actions = updater.modules["target_actions"]
    pairs = []
    for j, net in enumerate(critic.nets):
        pairs += zip(_flat_parameters(minimal.critics[j]), _flat_parameters(net), strict=True)
        targets = _target_leaves(critic_loss.target_qvalue_network_params, net, ("nets", str(j)))
        pairs += zip(_flat_parameters(minimal.target_critics[j]), targets, strict=True)
    for i, (agent, net) in enumerate(zip(agents, nets, strict=True)):
        pairs += zip(_flat_parameters(minimal.actors[i]), _flat_parameters(net), strict=True)
        targets = _target_leaves(target_actions.target_actors_params, net, (agent, "module"))
        pairs += zip(_flat_parameters(minimal.target_actors[i]), targets, strict=True)
    with torch.no_grad():
        for mine, theirs in pairs:
            mine.copy_(theirs)
    minimal.critic_steps = updater.delay.critic_steps
    return minimal


def replay_from(buffer, agents: Sequence[str]) -> TensorReplay:
    """A :class:`TensorReplay` holding a copy of what our replay buffer holds (same rows, same order)."""
    storage = buffer.buffer.storage
    data = storage._storage[: len(storage)]
    tensors = {
        "state": data["state"],
        "next_state": data["next", "state"],
        "reward": data["next", "reward"],
        "terminated": data["next", "terminated"],
        "steps": data["steps_to_next_obs"],
    }
    for i, agent in enumerate(agents):
        tensors[f"observation_{i}"] = data[agent, "observation"]
        tensors[f"next_observation_{i}"] = data["next", agent, "observation"]
        tensors[f"action_{i}"] = data[agent, "action"]
    return TensorReplay({name: t.clone() for name, t in tensors.items()})


def transitions_from(batch, agents: Sequence[str]) -> Transitions:
    """Our sampled TensorDict batch as :class:`Transitions`."""
    return Transitions(
        state=batch["state"],
        observations=[batch[a, "observation"] for a in agents],
        actions=[batch[a, "action"] for a in agents],
        reward=batch["next", "reward"],
        next_state=batch["next", "state"],
        next_observations=[batch["next", a, "observation"] for a in agents],
        terminated=batch["next", "terminated"],
        steps=batch["steps_to_next_obs"],
    )
