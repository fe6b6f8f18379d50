"""recipes/benchmarks/plot_benchmarks.py: marl-eval's layout, the shared evaluation steps, the rliable figures."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "plot_benchmarks.py"


def _module():
    spec = importlib.util.spec_from_file_location("plot_benchmarks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs():
    # "good" climbs to 10 on every seed, "bad" stays near 0; seed 2 of "good" has one step more
    runs = [
        {"algo": "good", "seed": s, "eval_curve": [[100, 1.0 + s], [200, 5.0 + s], [300, 10.0 + s]]} for s in range(3)
    ]
    runs[2]["eval_curve"].append([400, 13.0])
    runs += [{"algo": "bad", "seed": s, "eval_curve": [[100, 0.1 * s], [200, 0.2], [300, 0.3 * s]]} for s in range(3)]
    return runs


def test_marl_eval_layout_holds_every_step_and_the_final_return():
    layout = _module().to_marl_eval(_runs(), "pettingzoo", "simple_spread")
    seed = layout["pettingzoo"]["simple_spread"]["good"]["1"]
    assert seed["step_0"] == {"step_count": 100, "return": [2.0]}
    assert seed["absolute_metrics"] == {"return": [11.0]}
    assert set(layout["pettingzoo"]["simple_spread"]) == {"good", "bad"}


def test_scores_use_the_steps_every_run_shares_and_normalise_to_the_unit_interval():
    module = _module()
    frames, scores = module.score_matrices(_runs())
    assert frames.tolist() == [100, 200, 300]  # step 400 exists for one run only
    assert scores["good"].shape == (3, 3) and scores["good"][2].tolist() == [3.0, 7.0, 12.0]
    normalised = module.normalise(scores)
    assert min(v.min() for v in normalised.values()) == 0.0 and max(v.max() for v in normalised.values()) == 1.0


def test_a_file_without_algo_and_seed_needs_them_named(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"eval_curve": [[100, 1.0]]}))
    with pytest.raises(ValueError, match="Fix: pass --algo and --seed"):
        _module().load_runs([path])
    assert _module().load_runs([path], algo="happo", seed=1)[0]["algo"] == "happo"


def test_figures_and_estimates(tmp_path):
    pytest.importorskip("rliable")
    figures = _module().plot(_runs(), tmp_path, "toy", ["good", "bad"], reps=200)
    for stem in ("sample_efficiency", "aggregates", "probability_of_improvement"):
        for suffix in ("png", "svg"):
            assert (tmp_path / f"{stem}.{suffix}").stat().st_size > 1000
    assert figures["P(good > bad)"][0] == 1.0  # every seed of good ends above every seed of bad
    assert figures["good"]["iqm"][0] > 0.7 > 0.1 > figures["bad"]["iqm"][0]
    assert np.isclose(figures["good"]["optimality_gap"][0], 1 - figures["good"]["mean"][0])
    for point, low, high in figures["good"].values():
        assert low <= point <= high


def test_a_second_evaluation_at_the_same_step_replaces_the_first_in_marl_eval():
    run = {"algo": "happo", "seed": 0, "eval_curve": [[80, -0.7], [160, -0.55], [160, -0.53]]}
    seed = _module().to_marl_eval([run], "vmas", "balance")["vmas"]["balance"]["happo"]["0"]
    assert seed == {
        "step_0": {"step_count": 80, "return": [-0.7]},
        "step_1": {"step_count": 160, "return": [-0.53]},
        "absolute_metrics": {"return": [-0.53]},
    }


def test_another_metric_is_read_from_its_own_curve_and_named_in_marl_eval(tmp_path):
    module = _module()
    run = {
        "algo": "happo",
        "seed": 0,
        "eval_curve": [[80, 1.5], [160, 2.0]],
        "eval_win_rate_curve": [[80, 0.25], [160, 1.0]],
    }
    seed = module.to_marl_eval([run], "smax", "3s5z", metric="win_rate")["smax"]["3s5z"]["happo"]["0"]
    assert seed["step_0"] == {"step_count": 80, "win_rate": [0.25]}
    assert seed["absolute_metrics"] == {"win_rate": [1.0]}
    frames, scores = module.score_matrices([run], metric="win_rate")
    assert frames.tolist() == [80, 160] and scores["happo"].tolist() == [[0.25, 1.0]]
    with pytest.raises(ValueError, match=r"no 'eval_goal_rate_curve'.*\['return', 'win_rate'\]"):
        module.score_matrices([run], metric="goal_rate")


def test_win_rate_figures(tmp_path):
    pytest.importorskip("rliable")
    runs = [{**r, "eval_win_rate_curve": [[f, v / 13.0] for f, v in r["eval_curve"]]} for r in _runs()]
    figures = _module().plot(runs, tmp_path, "toy", None, reps=200, metric="win_rate")
    assert (tmp_path / "sample_efficiency.svg").read_text().count("IQM evaluation win rate") >= 1
    assert figures["good"]["iqm"][0] > 0.7 > 0.1 > figures["bad"]["iqm"][0]
