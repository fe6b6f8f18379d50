"""Replaying fixed action sequences through an env: shared by the env-family tests."""

import torch


def fixed_actions(env, steps, seed=0):
    """Actions sampled ahead of time from the specs, so that two envs can replay them."""
    torch.manual_seed(seed)
    return [env.full_action_spec.rand() for _ in range(steps)]


def replay(env, actions):
    """Steps env with the given actions (resetting finished copies); returns the stacked transitions."""
    td = env.reset()
    out = []
    for action in actions:
        td.update(action)
        transition, td = env.step_and_maybe_reset(td)
        out.append(transition.clone())
    return torch.stack(out, dim=1)
