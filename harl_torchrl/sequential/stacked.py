r"""Stacked agent groups: TorchRL's multi-agent layout, each agent of the stack its own HA agent.

TorchRL keeps same-shaped agents in one group with a stacked agent dimension (``VmasEnv``'s
default group ``"agents"``: entries ``[*B, n, ...]``) and gives each agent its own parameters
with :class:`~torchrl.modules.MultiAgentMLP` ``(share_params=False)``: every weight holds all
agents' copies on a leading dimension, ``W[n, out, in]``, and one :func:`torch.vmap` call
evaluates the whole stack. That is the representation kept here, unchanged: collection runs
the stacked policy as TorchRL built it.

What the sequential scheme needs on top of it is that agent :math:`k` of the stack be its own
agent: updated in its turn, alone, with its own optimiser state. One Adam over the stacked
tensor ``W`` cannot do that: its moments are per *element*, so after agent 0's step the
moment of agent 1's slice is non-zero and a later step with a zero gradient for agent 1 still
moves it, :math:`\Delta W_1 = -\eta\, \hat m_1 / (\sqrt{\hat v_1} + \epsilon) \neq 0`.

So each agent gets **views**: for every stacked weight ``W`` (a leaf ``[n, ...]``) and every
agent ``k``, a leaf :class:`~torch.nn.Parameter` ``W_k`` that *aliases* ``W[k]`` (the same
memory, not a copy). An in-place optimiser step on ``W_k`` moves ``W[k]`` and nothing else, and
a plain ``torch.optim.Adam(W_k's)`` per agent has its own moments and step count: the
per-agent optimiser state is the ordinary one. The collector, the checkpoint
(``policy.state_dict()``) and TorchRL see the stacked ``W``; the losses and optimisers see the
views.

Agent :math:`k`'s actor, :class:`AgentSliceActor`, evaluates the stacked policy with only
agent :math:`k`'s network computed (from its views, with a gradient): each
:class:`~torchrl.modules.MultiAgentNetBase` of the policy runs agent :math:`k`'s slice alone
and broadcasts its output along the agent dimension, so one slice costs one agent's forward
(not :math:`n`), and the distribution is built over ``[*B, n]`` exactly as the policy builds it
(per-agent ``low``/``high`` and masks included). Only entry :math:`k` of anything computed from
it is meaningful; the per-agent losses select it (their ``agent_index``):

.. math::

    \log\pi^k(a^k|o^k) = \big[\log\pi_{\text{stack}}(a|o)\big]_{\ldots, k}, \qquad
    r^k = \exp\big(\log\pi^k_\theta - [\text{stored log-prob}]_{\ldots, k}\big),

and the factor :math:`M` passed from agent to agent is the same joint ``[*B, 1]`` tensor as for
one group per agent. Its ``forward`` writes agent :math:`k`'s fresh entries into slice
:math:`k` of the stacked outputs already in the TensorDict and leaves the other agents'
entries as they are (the off-policy actor step's joint action).

Several groups work together: the sequential scheme takes ``{agent: trainer}``, and a stack
contributes one entry per agent (:attr:`AgentStack.actors`) next to one-agent groups.

The one shape of a stack, in both directions: the stacked tensor ``W[n, ...]`` (leading
agent dimension) is the storage, and agent :math:`k`'s leaf parameters alias ``W[k]``.
:class:`AgentStack` starts from a TorchRL-built stack and makes the per-agent views;
:func:`stack_agent_parameters` starts from one module per agent (the library's
one-group-per-agent actors) and makes the stacked storage, which a batched evaluation of
the group reads as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import distributions as D
from torch import nn
from torchrl.modules.models.multiagent import MultiAgentNetBase

from harl_torchrl.errors import ConfigError

_MAPPO = (
    "that is MAPPO (one policy for every agent of the group, updated together), not a heterogeneous-agent "
    "method: train it with TorchRL's MAPPOLoss/ClipPPOLoss (or algo=mappo algo.share_params=true), or build "
    "the policy with MultiAgentMLP(share_params=False) so that each agent of the stack has its own parameters"
)


def stacked_networks(module: nn.Module) -> list[MultiAgentNetBase]:
    """The :class:`~torchrl.modules.MultiAgentNetBase` networks of ``module`` that hold several agents.

    Returns:
        Every multi-agent network of ``module`` with ``n_agents > 1``, in module order.

    Raises:
        ConfigError: one of them shares its parameters across agents (``share_params=True``:
            that is MAPPO, and the message says so).

    Example:
        >>> from torchrl.modules import MultiAgentMLP
        >>> net = MultiAgentMLP(n_agent_inputs=3, n_agent_outputs=2, n_agents=4, centralized=False,
        ...                     share_params=False, depth=1, num_cells=8)
        >>> [m.n_agents for m in stacked_networks(nn.Sequential(net))]
        [4]
    """
    nets = [m for m in module.modules() if isinstance(m, MultiAgentNetBase) and m.n_agents > 1]
    for net in nets:
        if net.share_params:
            raise ConfigError(
                f"the {type(net).__name__} of this policy shares its parameters across its {net.n_agents} agents "
                f"(share_params=True): {_MAPPO}"
            )
    return nets


class _StackedWeight:
    """One stacked leaf ``W[n, ...]`` of a network and its per-agent views ``W_k`` (aliases of ``W[k]``)."""

    def __init__(self, net: MultiAgentNetBase, key: tuple[str, ...], n_agents: int) -> None:
        self.net = net
        self.key = key
        stacked = self.current()
        self.is_parameter = isinstance(stacked, nn.Parameter)
        self.views = (
            [nn.Parameter(stacked.detach()[k], requires_grad=stacked.requires_grad) for k in range(n_agents)]
            if self.is_parameter
            else []
        )

    def current(self) -> torch.Tensor:
        return self.net.params.get(self.key)

    def agent(self, k: int) -> torch.Tensor:
        """Agent ``k``'s view (a buffer: its slice, read now)."""
        return self.views[k] if self.is_parameter else self.current()[k]

    def check(self, k: int) -> None:
        if self.is_parameter and self.views[k].data_ptr() != self.current()[k].data_ptr():
            raise ConfigError(
                f"the stacked parameter {'.'.join(self.key)} of a {type(self.net).__name__} was replaced after its "
                "AgentStack was built (e.g. module.to(device), load_state_dict(assign=True) or a copy), so the "
                "per-agent views no longer alias it: build the AgentStack (and the agents' optimisers) again after "
                "moving or replacing the policy's parameters"
            )


class AgentStack:
    r"""The agents of one stacked TorchRL group, each with its own parameter views and actor.

    See :mod:`harl_torchrl.sequential.stacked` for the representation. ``module`` is the
    group's policy as TorchRL builds it (e.g. a :class:`~torchrl.modules.ProbabilisticActor`
    over ``MultiAgentMLP(share_params=False)``, or a deterministic actor), reading and writing
    the group's stacked entries ``(group, ...)`` with shape ``[*B, n, ...]``. Every parameter
    of ``module`` must belong to a non-shared :class:`~torchrl.modules.MultiAgentNetBase`
    (each agent its own slice).

    Args:
        module: the stacked policy (kept, not copied: collect with it).
        agent_names: a name per agent (e.g. ``env.group_map["agents"]``); default
            ``f"{group}_{k}"``.
        group: the group's name; default: the first element of ``module.out_keys[0]``.

    Raises:
        ConfigError: no multi-agent network, parameters shared across the stack (that is
            MAPPO), a parameter outside the stacked networks, networks of different
            ``n_agents``, or the wrong number of names.

    Example:
        >>> from tensordict.nn import TensorDictModule
        >>> from tensordict.nn.distributions import NormalParamExtractor
        >>> from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
        >>> net = nn.Sequential(MultiAgentMLP(n_agent_inputs=4, n_agent_outputs=4, n_agents=3, centralized=False,
        ...                                   share_params=False, depth=1, num_cells=8), NormalParamExtractor())
        >>> loc_scale = [("agents", "loc"), ("agents", "scale")]
        >>> policy = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=loc_scale),
        ...     in_keys=loc_scale, out_keys=[("agents", "action")], distribution_class=TanhNormal, return_log_prob=True)
        >>> stack = AgentStack(policy)
        >>> stack.agent_names
        ['agents_0', 'agents_1', 'agents_2']
        >>> optimizers = {name: torch.optim.Adam(actor.parameters(), lr=1e-3) for name, actor in stack.actors.items()}
        >>> [tuple(p.shape) for p in stack.actors["agents_1"].parameters()]  # agent 1's slice of each weight
        [(8, 4), (8,), (4, 8), (4,)]
    """

    def __init__(
        self, module: TensorDictModuleBase, agent_names: Sequence[str] | None = None, *, group: str | None = None
    ) -> None:
        nets = stacked_networks(module)
        if not nets:
            raise ConfigError(
                f"{type(module).__name__} holds no multi-agent network over several agents; an AgentStack is a "
                "policy built on TorchRL's MultiAgentMLP(n_agents=n, share_params=False) (or another "
                "MultiAgentNetBase). A one-agent group needs no stack: give its actor to the loss directly"
            )
        sizes = {net.n_agents for net in nets}
        if len(sizes) > 1:
            raise ConfigError(f"the policy's multi-agent networks hold different numbers of agents {sorted(sizes)}")
        n_agents = sizes.pop()
        stacked = {id(p) for net in nets for p in net.parameters()}
        loose = [name for name, p in module.named_parameters() if id(p) not in stacked]
        if loose:
            raise ConfigError(
                f"parameter {loose[0]!r} of the stacked policy is not inside a MultiAgentNetBase with "
                f"share_params=False, so every agent of the stack would share it (the sequential scheme moves "
                "agents one at a time, each with its own parameters): put it in the multi-agent network, or "
                "give it an agent dimension inside one"
            )
        if group is None:
            first = module.out_keys[0]
            group = first[0] if isinstance(first, tuple) else first
        self.module = module
        self.group = group
        self.n_agents = n_agents
        self.agent_names: list[str] = (
            [f"{group}_{k}" for k in range(n_agents)] if agent_names is None else [str(a) for a in agent_names]
        )
        if len(self.agent_names) != n_agents or len(set(self.agent_names)) != n_agents:
            raise ConfigError(f"{n_agents} distinct agent names needed for the stack, got {self.agent_names}")
        self._nets = nets
        self._weights = {
            id(net): [
                _StackedWeight(net, key if isinstance(key, tuple) else (key,), n_agents)
                for key in net.params.keys(include_nested=True, leaves_only=True)
            ]
            for net in nets
        }
        self._active: int | None = None
        #: ``{agent name: AgentSliceActor}``, in agent order.
        self.actors: dict[str, AgentSliceActor] = {
            name: AgentSliceActor(self, k) for k, name in enumerate(self.agent_names)
        }

    def parameters(self, agent: int | str) -> list[nn.Parameter]:
        """Agent ``agent``'s parameter views (index or name), in the networks' order."""
        k = self.index(agent)
        return [w.views[k] for net in self._nets for w in self._weights[id(net)] if w.is_parameter]

    def index(self, agent: int | str) -> int:
        """The position of an agent (given by index or name) in the stack."""
        if isinstance(agent, str):
            if agent not in self.agent_names:
                raise ConfigError(f"no agent {agent!r} in the stack; its agents are {self.agent_names}")
            return self.agent_names.index(agent)
        if not 0 <= agent < self.n_agents:
            raise ConfigError(f"agent index {agent} out of range for a stack of {self.n_agents}")
        return int(agent)

    @contextlib.contextmanager
    def agent_mode(self, agent: int | str) -> Iterator[AgentStack]:
        """Inside the block, the stacked networks compute agent ``agent``'s slice only, from its views.

        Each :class:`~torchrl.modules.MultiAgentNetBase` of the policy evaluates agent
        :math:`k`'s network on agent :math:`k`'s input (on the whole input if it is
        centralised) with the views :math:`W_k` as parameters, and broadcasts the output
        along the agent dimension. Gradients reach the views of agent :math:`k` only.

        Raises:
            ConfigError: the stacked parameters were replaced since the stack was built.
            RuntimeError: the block is entered again before it was left.
        """
        k = self.index(agent)
        if self._active is not None:
            raise RuntimeError(f"the stack is already evaluating agent {self._active}")
        for net in self._nets:
            for weight in self._weights[id(net)]:
                weight.check(k)
        self._active = k
        try:
            for net in self._nets:
                net.forward = _SliceForward(net, k, self._weights[id(net)])
            yield self
        finally:
            for net in self._nets:
                net.__dict__.pop("forward", None)
            self._active = None


class _SliceForward:
    """``MultiAgentNetBase.forward`` restricted to agent ``k`` (see :meth:`AgentStack.agent_mode`)."""

    def __init__(self, net: MultiAgentNetBase, k: int, weights: list[_StackedWeight]) -> None:
        self.net, self.k, self.weights = net, k, weights

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        net, k = self.net, self.k
        x = torch.cat(inputs, -1) if len(inputs) > 1 else inputs[0]
        dim = net.agent_dim if net.agent_dim >= 0 else x.ndim + net.agent_dim
        x = net._pre_forward_check(x)
        if not net.centralized:
            x = x.select(dim, k)
        params = TensorDict({w.key: w.agent(k) for w in self.weights}, [])
        with params.to_module(net._empty_net, preserve_module_state=False):
            out = net._empty_net(x)
        out = out.unsqueeze(dim)
        shape = list(out.shape)
        shape[dim] = net.n_agents
        return out.expand(shape)


class AgentSliceActor(TensorDictModuleBase):
    r"""Agent :math:`k` of an :class:`AgentStack`: the stacked policy seen as one agent's actor.

    Its parameters are agent :math:`k`'s views only (build the agent's optimiser on
    ``actor.parameters()``); the stacked policy is held by reference, not registered. Reads
    and writes the policy's own stacked keys (e.g. ``("agents", "observation")``,
    ``("agents", "action")``, ``("agents", "action_log_prob")``).

    * :meth:`get_dist`: the policy's distribution over ``[*B, n]`` computed in
      :meth:`AgentStack.agent_mode`; entry :math:`k` is agent :math:`k`'s (the losses
      select it through :attr:`agent_index`).
    * :meth:`forward`: agent :math:`k`'s fresh outputs written into slice :math:`k` of each
      stacked output entry already in ``tensordict`` (in place; entries absent are written
      whole, where only slice :math:`k` is meaningful).

    Args:
        stack: the stack.
        index: the agent's position in it.

    Example:
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.modules import MultiAgentMLP
        >>> net = MultiAgentMLP(n_agent_inputs=3, n_agent_outputs=2, n_agents=2, centralized=False,
        ...                     share_params=False, depth=1, num_cells=8)
        >>> policy = TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "action")])
        >>> stack = AgentStack(policy)
        >>> td = TensorDict({"agents": {"observation": torch.randn(5, 2, 3)}}, [5])
        >>> td = policy(td)
        >>> before = td["agents", "action"].clone()
        >>> with torch.no_grad():
        ...     _ = stack.actors["agents_1"](td)  # recomputes agent 1's slice only
        >>> torch.equal(td["agents", "action"][:, 0], before[:, 0])
        True
    """

    def __init__(self, stack: AgentStack, index: int) -> None:
        super().__init__()
        self.__dict__["stack"] = stack  # not a submodule: its parameters are the stacked ones
        self.agent_index = index
        self.agent_parameters = nn.ParameterList(stack.parameters(index))
        self.in_keys = list(stack.module.in_keys)
        self.out_keys = list(stack.module.out_keys)

    @property
    def log_prob_keys(self) -> list[NestedKey]:
        """The stacked policy's log-probability keys (e.g. ``[("agents", "action_log_prob")]``)."""
        return list(getattr(self.stack.module, "log_prob_keys", []))

    @property
    def dist_sample_keys(self) -> list[NestedKey]:
        """The stacked policy's sampled keys (e.g. ``[("agents", "action")]``)."""
        return list(getattr(self.stack.module, "dist_sample_keys", []))

    @property
    def module(self) -> nn.Module:
        """The stacked policy's ``module`` (HATRPO rebuilds the old distribution with its last step)."""
        return self.stack.module.module

    def get_dist(self, tensordict: TensorDictBase) -> D.Distribution:
        """The stacked policy's distribution with agent :math:`k`'s network computed from its views."""
        with self.stack.agent_mode(self.agent_index):
            return self.stack.module.get_dist(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes agent :math:`k`'s fresh outputs into slice :math:`k` of the stacked entries (in place)."""
        with self.stack.agent_mode(self.agent_index):
            out = self.stack.module(tensordict.copy())
        agent_dim = tensordict.batch_dims
        k, n = self.agent_index, self.stack.n_agents
        for key in self.out_keys:
            fresh = out.get(key)
            old = tensordict.get(key, None)
            if old is not None:
                parts = [old.narrow(agent_dim, 0, k), fresh.narrow(agent_dim, k, 1)]
                parts.append(old.narrow(agent_dim, k + 1, n - k - 1))
                fresh = torch.cat(parts, agent_dim)
            tensordict.set(key, fresh)
        return tensordict


def check_agent_optimizer(loss: nn.Module, optimizer: torch.optim.Optimizer, *, agent: str | None = None) -> None:
    """Refuses an optimiser that cannot train agent :math:`k` of a stack on its own (no-op for other losses).

    For a loss whose ``actor_network`` is an :class:`AgentSliceActor`, the optimiser must hold
    that agent's views and nothing of the other agents of the stack: an optimiser over the
    stacked tensors never receives a gradient (the loss differentiates the views) and its
    moments would move every agent; one holding another agent's views would step it too.

    Args:
        loss: the agent's loss.
        optimizer: the optimiser its trainer steps.
        agent: the agent's name, for the message.

    Raises:
        ConfigError: the optimiser holds a stacked tensor or another agent's views, or misses
            one of the agent's own.

    Example:
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.modules import MultiAgentMLP
        >>> net = MultiAgentMLP(n_agent_inputs=3, n_agent_outputs=2, n_agents=2, centralized=False,
        ...                     share_params=False, depth=1, num_cells=8)
        >>> policy = TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "action")])
        >>> stack = AgentStack(policy)
        >>> loss = nn.Module()
        >>> loss.actor_network = stack.actors["agents_0"]
        >>> check_agent_optimizer(loss, torch.optim.Adam(stack.actors["agents_0"].parameters()))
        >>> check_agent_optimizer(loss, torch.optim.Adam(net.parameters()))
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: the optimiser of agent 'agents_0' holds the stacked parameters of its group ...
    """
    actor = getattr(loss, "actor_network", None)
    if not isinstance(actor, AgentSliceActor):
        return
    stack = actor.stack
    name = agent or stack.agent_names[actor.agent_index]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    fix = f"build it on the agent's own views: torch.optim.Adam(stack.actors[{name!r}].parameters(), ...)"
    if held & {id(p) for p in stack.module.parameters()}:
        raise ConfigError(
            f"the optimiser of agent {name!r} holds the stacked parameters of its group (every agent's weights in "
            "one tensor): it never receives the agent's gradient (the loss differentiates the agent's views) and its "
            f"moments would move every agent of the stack; {fix}"
        )
    others = {id(p) for k in range(stack.n_agents) if k != actor.agent_index for p in stack.parameters(k)}
    if held & others:
        raise ConfigError(f"the optimiser of agent {name!r} holds another agent's parameter views; {fix}")
    if not {id(p) for p in actor.parameters()} <= held:
        raise ConfigError(f"the optimiser of agent {name!r} misses some of its parameter views; {fix}")


def stack_agent_parameters(modules: Sequence[nn.Module]) -> TensorDict:
    r"""Moves same-shaped agents' parameters into one stacked storage, each agent's becoming a view of it.

    The other direction of :class:`AgentStack`, for agents built one module each (the
    library's one-group-per-agent actors): for every parameter and buffer name, the
    agents' tensors are stacked once into ``W[n, ...]`` and each agent's tensor is then
    re-pointed at its slice (``p.data = W[k]``: the same :class:`~torch.nn.Parameter`
    object, now aliasing ``W[k]``). Values are unchanged, every optimiser, loss and
    checkpoint of the agents keeps working on its own parameters as before (one agent's
    step moves ``W[k]`` only), and ``W`` always holds every agent's current weights: a
    batched evaluation of the group (``torch.vmap`` of a ``functional_call``, or one
    ``baddbmm`` per layer) reads it directly, without restacking on every call.

    Both directions give the same representation, the one shape of a stack in this
    library: **the stacked tensor is the storage, ``[n_agents, *per-agent shape]`` on a
    leading agent dimension, and agent** :math:`k`'**s leaf parameters alias** ``W[k]``.

    Re-pointing is undone by anything that replaces the agents' tensors (``module.to``
    to another device or dtype, ``load_state_dict(assign=True)``): stack after moving.
    ``load_state_dict`` (in place) keeps the aliasing.

    Args:
        modules: the agents' networks, one per agent, with the same parameter and buffer
            names, shapes, dtypes and devices.

    Returns:
        The stacked storage, a :class:`~tensordict.TensorDict` with batch size ``[n]``
        and the modules' nested names as keys (``stacked.to_module(module)`` and
        ``stacked.flatten_keys(".").to_dict()`` give what a functional call needs).

    Raises:
        ConfigError: fewer than two modules, different structures, or a tensor shared
            by two agents.

    Example:
        >>> nets = [nn.Linear(3, 2) for _ in range(4)]
        >>> stacked = stack_agent_parameters(nets)
        >>> stacked["weight"].shape
        torch.Size([4, 2, 3])
        >>> with torch.no_grad():
        ...     _ = nets[1].weight.add_(1.0)  # an optimiser's in-place step on agent 1
        >>> torch.equal(stacked["weight"][1], nets[1].weight), torch.equal(stacked["weight"][0], nets[0].weight)
        (True, True)
        >>> x = torch.randn(4, 5, 3)  # [agents, batch, features]
        >>> flat = stacked.flatten_keys(".").to_dict()
        >>> out = torch.vmap(lambda p, x: torch.func.functional_call(nets[0], p, (x,)))(flat, x)
        >>> torch.allclose(out[2], nets[2](x[2]))
        True
    """
    modules = list(modules)
    if len(modules) < 2:
        raise ConfigError(f"stacking needs at least two agents' modules, got {len(modules)}")
    tensors = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in modules]
    signature = {name: (t.shape, t.dtype, t.device) for name, t in tensors[0].items()}
    for k, named in enumerate(tensors[1:], start=1):
        other = {name: (t.shape, t.dtype, t.device) for name, t in named.items()}
        if other != signature:
            raise ConfigError(
                f"agent {k}'s module differs from agent 0's (parameter names, shapes, dtypes or devices): only "
                "same-shaped agents can share one stacked storage"
            )
    seen: dict[int, int] = {}
    for k, named in enumerate(tensors):
        for t in named.values():
            if seen.setdefault(id(t), k) != k:
                raise ConfigError(
                    f"agents {seen[id(t)]} and {k} share a parameter tensor: stacking needs each agent's own "
                    "(parameters shared by every agent are MAPPO's shared policy, not a stack)"
                )
    stacked = TensorDict(
        {tuple(name.split(".")): torch.stack([named[name].detach() for named in tensors]) for name in signature},
        [len(modules)],
    )
    with torch.no_grad():
        for k, named in enumerate(tensors):
            for name, t in named.items():
                t.data = stacked.get(tuple(name.split(".")))[k]
    return stacked
