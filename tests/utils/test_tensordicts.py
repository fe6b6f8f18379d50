"""writable_copy: setting the given keys in the copy leaves the original as it was; the rest is shared."""

import torch
from tensordict import TensorDict

from harl_torchrl.utils.tensordicts import writable_copy


def test_writing_the_keys_leaves_the_original_and_shares_the_rest():
    batch = TensorDict(
        {
            "state": torch.zeros(4, 3),
            ("a", "action"): torch.zeros(4, 2),
            ("a", "observation"): torch.zeros(4, 5),
            ("b", "action"): torch.zeros(4, 2),
            ("next", "a", "observation"): torch.zeros(4, 5),
            ("next", "reward"): torch.zeros(4, 1),
        },
        [4],
    )
    before = batch.clone()
    keys = [("a", "action"), ("next", "a", "action"), "root_out"]
    td = writable_copy(batch, keys)
    assert (td == batch).all()
    for key in keys:
        td.set(key, torch.ones(4, 2))
    assert (batch == before).all() and set(batch.keys(True, True)) == set(before.keys(True, True))
    assert td["b"] is batch["b"] and td["next", "reward"] is batch["next", "reward"]
    assert td["a", "observation"] is batch["a", "observation"]  # tensors are shared, as with copy()
    assert td["a"] is not batch["a"] and td["next"] is not batch["next"] and td["next", "a"] is not batch["next", "a"]
    assert td.batch_size == batch.batch_size and td["next", "a"].batch_size == batch.batch_size
