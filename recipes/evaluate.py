"""Evaluate a trained checkpoint: rebuild env, networks and policy from the checkpoint alone, and play.

    python recipes/evaluate.py checkpoint=outputs/happo_vmas_balance/<run>/checkpoint.pt
    python recipes/evaluate.py checkpoint=<path> episodes=100 deterministic=false seed=3
    python recipes/evaluate.py checkpoint=<path> video=true video_episodes=2   # MP4 + GIF, headless

The same as the ``harl-evaluate`` command. What happens is in
:func:`harl_torchrl.run.evaluate.evaluate_checkpoint`: everything is rebuilt from what
the checkpoint records (its algorithm, env and model config), so no training override
needs retyping; with ``episodes`` unset and ``deterministic=true`` the first figures
reproduce the training run's final deterministic evaluation exactly.
"""

import sys

from harl_torchrl.run.cli import evaluate

if __name__ == "__main__":
    sys.argv[0] = "recipes/evaluate.py"
    evaluate()
