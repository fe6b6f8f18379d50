"""Train any algorithm of the library on a multi-agent environment: the readable door.

    python recipes/train.py                                   # HAPPO, VMAS balance, 4 agents, CPU
    python recipes/train.py algo=hatd3 env=pettingzoo/simple_spread
    python recipes/train.py env=vmas/navigation total_frames=1_000_000
    python recipes/train.py preset=reference/humanoid_17x1_happo seed=1   # a published run's settings
    python recipes/train.py resume=outputs/<run dir> total_frames=2_000_000

The same as the ``harl-train`` command a pip install provides (same configs, same
overrides). What happens is in :func:`harl_torchrl.run.run`, one loop for every
algorithm: build the env and the algorithm's components from the typed config, then
collect -> train -> log / evaluate / checkpoint. Ctrl-C or SIGTERM stops after the
iteration in flight with a checkpoint, and prints the command that resumes it.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from harl_torchrl.run.cli import checked_command_line, train_in_hydra_dir


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: trains ``cfg`` in Hydra's run dir (``outputs/...``)."""
    train_in_hydra_dir(cfg, program="python recipes/train.py")


if __name__ == "__main__":
    # a bad override is reported in one line (key, value, fix) before Hydra or torch start;
    # resume=<run dir> becomes that run's own overrides and dir
    sys.argv[1:] = checked_command_line(sys.argv[1:], Path(__file__).parent / "conf")
    main()
