"""The front of the house: one training loop over one components protocol.

:func:`run` trains any registered algorithm from a run config; :class:`Components` is
what it needs of an algorithm (built by the algorithm's schema,
:meth:`~harl_torchrl.config.AlgoConfig.build`). The console scripts ``harl-train`` and
``harl-evaluate`` (:mod:`harl_torchrl.run.cli`) and the recipes call the same code.
"""

from harl_torchrl.run.components import Components
from harl_torchrl.run.loop import run
from harl_torchrl.run.stop import RunStopped

__all__ = ["Components", "RunStopped", "run"]
