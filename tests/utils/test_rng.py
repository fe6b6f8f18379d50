"""RNG states: they survive a checkpoint file, and reading them needs no checkpoint format nor config."""

import random
import subprocess
import sys

import numpy as np
import torch

from harl_torchrl.utils.checkpoint import load_checkpoint, save_checkpoint
from harl_torchrl.utils.rng import generator_state, rng_state, seed_everything, set_generator_state, set_rng_state


def _draws(generator=None):
    return (
        torch.rand(3).tolist(),
        np.random.rand(3).tolist(),
        [random.random() for _ in range(3)],
        None if generator is None else generator.random(3).tolist(),
    )


def test_every_stream_resumes_from_a_checkpoint_file(tmp_path):
    seed_everything(7)
    generator = np.random.default_rng(2**100)  # a PCG64 state beyond 64-bit integers
    _draws(generator)
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"rng": rng_state(), "env": generator_state(generator)})
    expected = _draws(generator)
    seed_everything(0)
    generator = np.random.default_rng(0)
    state = load_checkpoint(path)  # torch.load(weights_only=True)
    set_rng_state(state["rng"])
    set_generator_state(generator, state["env"])
    assert _draws(generator) == expected


def test_the_rng_helpers_import_neither_the_checkpoint_format_nor_the_configs():
    code = (
        "import sys, harl_torchrl.utils.rng; "
        "print(sorted(m for m in sys.modules if m.startswith(('harl_torchrl.utils.checkpoint', 'harl_torchrl.config', "
        "'hydra'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
