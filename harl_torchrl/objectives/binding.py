r"""A module evaluated on a TensorDict of parameters without swapping them in on every call.

TorchRL's functional losses evaluate a network on its (target) parameters with
``with params.to_module(module): module(td)``, which swaps every tensor in and back out
again on each call: about 0.2 ms for the MPE twin critic or three MPE actors on this
CPU, three times per off-policy gradient step. :class:`ParameterBinding` computes the
same with the swap done once:

* where ``module`` already holds ``params``' tensors (the live parameters, which
  ``convert_to_functional`` leaves in the module), it is ``module`` itself;
* otherwise (target parameters) it is a copy of ``module`` whose entries are
  ``params``' tensors themselves, as attributes: the Polyak update, a checkpoint load or
  a lazy initialisation that changes them in place is seen at once.

The binding is made on the first call and kept while the same ``params`` object is
passed, on the assumption TorchRL's own target updaters make (``SoftUpdate`` keeps the
target tensors it found at ``init_``): the tensors of ``params`` are changed in place, not
replaced. The losses that use it reset it (:meth:`ParameterBinding.reset`) where they
may be replaced: on ``_apply`` (``.to(device)``, dtype casts) and on a state-dict load.
Checking every leaf on every call instead would cost about 0.03-0.08 ms a call. A
``params.to_module(...)`` elsewhere leaves new tensor objects in ``params`` over the same
storage, which the binding still reads.
"""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDictBase
from torch import nn


def _attribute(module: nn.Module, key: tuple[str, ...]) -> torch.Tensor | None:
    owner = module
    for part in key[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return getattr(owner, key[-1], None)


class ParameterBinding:
    """``module`` bound to the tensors of a TensorDict of parameters shaped like its state.

    Args:
        module: the network (e.g. a loss's ``qvalue_network``).

    Example:
        >>> from tensordict import TensorDict
        >>> net = nn.Linear(2, 1)
        >>> target = TensorDict.from_module(net).data.clone().zero_()
        >>> x = torch.ones(1, 2)
        >>> bound = ParameterBinding(net).module(target)
        >>> with target.to_module(net):
        ...     swapped = net(x)
        >>> bool(torch.equal(bound(x), swapped)), bound is net
        (True, False)
        >>> ParameterBinding(net).module(TensorDict.from_module(net)) is net  # the module's own tensors
        True
    """

    def __init__(self, module: nn.Module) -> None:
        self.source = module
        self._module: nn.Module | None = None
        self._params: TensorDictBase | None = None

    def module(self, params: TensorDictBase) -> nn.Module:
        """The module to call: it computes what ``module`` computes under ``params.to_module(module)``.

        Args:
            params: ``module``'s parameters and buffers as a TensorDict keyed by attribute
                path (e.g. a loss's ``target_qvalue_network_params``); bound on the first
                call, after :meth:`reset`, or when another object is passed.
        """
        if self._module is None or params is not self._params:
            self._bind(params)
        return self._module

    def reset(self) -> None:
        """Binds again on the next call (the tensors of ``params`` may have been replaced)."""
        self._params = None

    def _bind(self, params: TensorDictBase) -> None:
        items = [
            (key if isinstance(key, tuple) else (key,), leaf)
            for key, leaf in params.items(include_nested=True, leaves_only=True)
        ]
        owned = all(_attribute(self.source, key) is leaf for key, leaf in items)
        if owned:
            module = self.source
        elif self._module is not None and self._module is not self.source:
            module = self._module  # the copy made before: its tensors are replaced below
        else:
            module = copy.deepcopy(self.source)
        for key, leaf in items if not owned else ():
            owner = module
            for part in key[:-1]:
                owner = getattr(owner, part)
            name = key[-1]
            owner._parameters.pop(name, None)  # the copy's own tensor goes; params' tensor becomes the attribute
            owner._buffers.pop(name, None)
            setattr(owner, name, leaf)
        self._module, self._params = module, params
