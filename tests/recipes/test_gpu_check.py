"""recipes/benchmarks/gpu_check.py: its CPU path runs every check; without CUDA it says so and exits 0."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

pytest.importorskip("vmas")

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_cpu_path_runs_every_check(gpu_check, tmp_path, capsys):
    tiny = ["--iterations", "2", "--rollout-steps", "5", "--compare-envs", "16", "--compare-steps", "5"]
    assert gpu_check.main(["--device", "cpu", "--envs", "16", "--out", str(tmp_path), *tiny]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["ok"] and summary["device"] == "cpu"
    assert [c["algo"] for c in summary["comparisons"]] == ["happo", "mappo"]
    for comparison in summary["comparisons"]:  # two CPU runs: bit-identical
        assert comparison["max_action_diff"] == 0 and comparison["max_parameter_diff"] == 0
        assert comparison["diagnostics_compared"] > 5 and not comparison["problems"]
    for result in summary["runs"]:
        assert result["iterations"] == 2 and result["tensors_checked_per_update"] > 20 and not result["problems"]
        assert result["collection_fps"] > 0 and result["update_fps"] > 0
    out = capsys.readouterr().out
    assert "| happo | 16 |" in out and "all checks passed" in out


def test_the_probe_names_a_tensor_off_the_device(gpu_check):
    td = TensorDict({"a": torch.zeros(2), ("g", "b"): torch.zeros(2, device="meta")}, [2])
    assert gpu_check.off_device(td, torch.device("cpu"), "batch") == ["batch/g/b (meta)"]
    state = {"opt": {"state": {0: {"step": torch.zeros(()), "exp_avg": torch.zeros(1, device="meta")}}}}
    assert gpu_check.off_device(state, torch.device("cpu"), "x") == ["x/opt/state/0/exp_avg (meta)"]  # step: CPU


def test_the_probe_stops_a_run_whose_update_leaves_the_device(gpu_check, tmp_path):
    from harl_torchrl.config import algo_config, model_config
    from harl_torchrl.envs import make_vmas_env

    env = make_vmas_env("balance", num_envs=4, n_agents=2, max_steps=5)
    parts = algo_config({"name": "happo"}).build(env, model_config({"hidden_sizes": [8]}), seed=0)
    with torch.no_grad():
        batch = env.rollout(5, parts.policy, break_when_any_done=False)
    calls = []
    with pytest.raises(AssertionError, match="tensors off meta: collected batch"):
        with gpu_check.device_probes(torch.device("meta"), calls):
            parts.train(batch, frames=20, iteration=1)
    assert calls and calls[0]["misplaced"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the script would run")
def test_without_cuda_it_says_so_and_exits_0(gpu_check, capsys):
    assert gpu_check.main([]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
