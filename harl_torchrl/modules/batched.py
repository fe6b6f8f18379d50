"""A joint policy that evaluates same-shaped agents together.

Each agent keeps its own leaf parameters (and its own optimiser). For collection,
agents whose networks have identical shapes are evaluated as a group: their networks
run either as one call under :func:`torch.vmap` over stacked parameters, or one
after another, and one distribution over ``[*B, n_agents, ...]`` is then built,
sampled and scored once. The result is written to each agent's own keys, as running
the actors one after another would.

On the CPU, vmapping small MLPs is *slower* than calling them in turn (measured on
2 cores with 4 agents of 2x128 units: 3.0 ms vs 1.4 ms at 600 environments, 12.2 ms
vs 7.2 ms at 4096), so by default vmap is used only on CUDA, where it replaces one
kernel launch per agent and layer with one per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.nn.probabilistic import interaction_type
from torch import nn
from torch.func import functional_call
from torchrl.modules import ProbabilisticActor


def _signature(actor: ProbabilisticActor) -> tuple:
    """Agents with the same signature can be vmapped together."""
    net_module = actor.module[0]
    prob = actor.module[-1]
    shapes = tuple((name, tuple(t.shape)) for name, t in net_module.module.state_dict().items())
    return (
        type(net_module.module),
        shapes,
        prob.distribution_class,
        repr(sorted(prob.distribution_kwargs.items())) if prob.distribution_kwargs else "",
        tuple(k[-1] if isinstance(k, tuple) else k for k in net_module.in_keys),
        tuple(k[-1] if isinstance(k, tuple) else k for k in net_module.out_keys),
        tuple(prob.dist_keys),
        tuple(k[-1] if isinstance(k, tuple) else k for k in prob.in_keys),
    )


class _AgentGroup(nn.Module):
    """Agents sharing one architecture, evaluated with stacked parameters."""

    def __init__(self, names: Sequence[str], actors: Sequence[ProbabilisticActor], use_vmap: bool | None) -> None:
        super().__init__()
        self.use_vmap = use_vmap
        self.names = list(names)
        self.actors = nn.ModuleList(actors)
        template = actors[0]
        self.net = template.module[0].module
        self.in_keys = [list(actor.module[0].in_keys) for actor in actors]
        self.out_keys = [list(actor.module[0].out_keys) for actor in actors]
        prob = template.module[-1]
        self.prob = prob
        # distribution kwarg -> position of the net output feeding it, or, for inputs
        # the net does not produce (an action mask), each agent's own key
        out_names = [k[-1] if isinstance(k, tuple) else k for k in template.module[0].out_keys]
        self.dist_inputs, self.dist_data = {}, {}
        for position, (kwarg, key) in enumerate(zip(prob.dist_keys, prob.in_keys, strict=True)):
            name = key[-1] if isinstance(key, tuple) else key
            if name in out_names:
                self.dist_inputs[kwarg] = out_names.index(name)
            else:
                self.dist_data[kwarg] = [actor.module[-1].in_keys[position] for actor in actors]
        self.action_keys = [actor.module[-1].out_keys[0] for actor in actors]
        self.log_prob_keys = [actor.log_prob_keys[0] for actor in actors]
        # Optimisers and load_state_dict update parameters in place, so these
        # references stay valid for the life of the actors.
        nets = [actor.module[0].module for actor in actors]
        self._params = {
            name: [dict(n.named_parameters())[name] for n in nets] for name, _ in self.net.named_parameters()
        }
        self._buffers = {name: [dict(n.named_buffers())[name] for n in nets] for name, _ in self.net.named_buffers()}

    def _vmapped(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
        params = {name: torch.stack(tensors) for name, tensors in self._params.items()}
        buffers = {name: torch.stack(tensors) for name, tensors in self._buffers.items()}
        inputs = [torch.stack([tensordict.get(keys[i]) for keys in self.in_keys]) for i in range(len(self.in_keys[0]))]

        def run(p, b, *x):
            return functional_call(self.net, {**p, **b}, tuple(x))

        outputs = torch.vmap(run)(params, buffers, *inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return tuple(out.movedim(0, tensordict.batch_dims) for out in outputs)

    def _looped(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
        per_agent = []
        for actor, keys in zip(self.actors, self.in_keys, strict=True):
            out = actor.module[0].module(*(tensordict.get(k) for k in keys))
            per_agent.append(out if isinstance(out, tuple) else (out,))
        return tuple(torch.stack(outs, dim=tensordict.batch_dims) for outs in zip(*per_agent, strict=True))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        use_vmap = (
            self.use_vmap
            if self.use_vmap is not None
            else tensordict.device is not None and tensordict.device.type == "cuda"
        )
        outputs = self._vmapped(tensordict) if use_vmap else self._looped(tensordict)
        agent_dim = tensordict.batch_dims
        data = {
            kwarg: torch.stack([tensordict.get(key) for key in keys], dim=agent_dim)
            for kwarg, keys in self.dist_data.items()
        }
        dist = self.prob.distribution_class(
            **{kwarg: outputs[index] for kwarg, index in self.dist_inputs.items()},
            **data,
            **(self.prob.distribution_kwargs or {}),
        )
        action = self.prob._dist_sample(dist, interaction_type=interaction_type())
        log_prob = dist.log_prob(action)
        for i in range(len(self.names)):
            for key, out in zip(self.out_keys[i], outputs, strict=True):
                tensordict.set(key, out.select(agent_dim, i))
            tensordict.set(self.action_keys[i], action.select(agent_dim, i))
            tensordict.set(self.log_prob_keys[i], log_prob.select(agent_dim, i))
        return tensordict


class BatchedJointPolicy(TensorDictModuleBase):
    """The joint policy of per-agent actors, evaluated in groups of same-shaped agents.

    Equivalent to running every actor in turn (the data written is the same, up to
    floating-point reassociation), with one distribution built, sampled and scored
    per group instead of per agent: on VMAS ``balance`` with 4 agents and 600
    environments the policy's time per step drops from 4.1 ms to 2.3 ms on 2 CPU
    cores. Agents with a unique architecture run their own actor.

    Gradients flow to each agent's own parameters (stacking is differentiable), but
    the intended use is collection under ``torch.no_grad()``; the losses use the
    per-agent actors.

    Args:
        actors: ``{agent: actor}`` as built by
            :func:`~harl_torchrl.modules.make_actors`.
        use_vmap: run each group's networks as one :func:`torch.vmap` call over
            stacked parameters (``True``), one after another (``False``), or vmap
            on CUDA only (``None``, the default; see the module docstring).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import make_agent_actor
        >>> actors = {a: make_agent_actor(a, 4, Bounded(-1.0, 1.0, shape=(2,))) for a in ("a", "b", "c")}
        >>> policy = BatchedJointPolicy(actors)
        >>> td = TensorDict({(a, "observation"): torch.randn(5, 4) for a in actors}, [5])
        >>> with torch.no_grad():
        ...     td = policy(td)
        >>> td["b", "action"].shape, td["b", "action_log_prob"].shape
        (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, actors: Mapping[str, ProbabilisticActor], use_vmap: bool | None = None) -> None:
        super().__init__()
        by_signature: dict[tuple, list[str]] = {}
        for name, actor in actors.items():
            by_signature.setdefault(_signature(actor), []).append(name)
        self.groups = nn.ModuleList()
        self.singles = nn.ModuleList()
        for names in by_signature.values():
            members = [actors[n] for n in names]
            if len(names) > 1 and not _shares_parameters(members):
                self.groups.append(_AgentGroup(names, members, use_vmap))
            else:
                self.singles.extend(members)
        self.in_keys = sorted({k for a in actors.values() for k in a.in_keys}, key=str)
        self.out_keys = sorted({k for a in actors.values() for k in a.out_keys}, key=str)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes every agent's action, log-probability and distribution parameters."""
        for group in self.groups:
            group(tensordict)
        for actor in self.singles:
            actor(tensordict)
        return tensordict


def _shares_parameters(actors: Sequence[nn.Module]) -> bool:
    ids = [{id(p) for p in actor.parameters()} for actor in actors]
    return any(ids[0] & other for other in ids[1:])
