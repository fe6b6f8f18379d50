import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from harl_torchrl.config import store_schemas

# The tests compose harl_torchrl/conf with hydra.compose directly, as a recipe's entry point does
# after it gives Hydra the schemas (importing the library does not).
store_schemas()

# One torch thread for the whole suite, as the recipes' default (threads: 1): the in-process
# recipe runs set it anyway, so fixing it here keeps results independent of test order.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
