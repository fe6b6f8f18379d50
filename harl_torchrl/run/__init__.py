"""The front of the house: one training loop over one components protocol.

:func:`run` trains any registered algorithm from a run config; :class:`Components` is
what it needs of an algorithm (built by the algorithm's schema,
:meth:`~harl_torchrl.config.AlgoConfig.build`). The console scripts ``harl-train`` and
``harl-evaluate`` (:mod:`harl_torchrl.run.cli`) and the recipes call the same code.

The names load on first use, so that the command line is checked (``harl_torchrl.run.cli``)
before torch and the simulators are imported: a typo costs a second, not half a minute.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harl_torchrl.run.components import Components
    from harl_torchrl.run.loop import run
    from harl_torchrl.run.stop import RunStopped

_HOMES = {"Components": "components", "run": "loop", "RunStopped": "stop"}

__all__ = ["Components", "RunStopped", "run"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
