"""The bad-config sweep: every config group, wrong types, ranges, unknown keys and combinations.

Each case composes the recipe config in-process (as ``python recipes/train.py <overrides>``
would, through :func:`compose_run_config`) and runs the recipe with the env, collector and
component factories replaced by ones that fail the test: the error must come from the
config check, before anything is built, and must name the key and the fix.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CONF = RECIPES / "conf"
# 8 envs x 10 steps = 80 samples per batch: small enough for the minibatch checks to bite
TINY = ["env.num_envs=8", "collector.rollout_steps=10", "logger.progress_bar=false"]
NAV = "env=vmas/navigation"  # its make_world reads 16 keywords (the default balance reads 3)

# (id, overrides, the key the message must name)
CASES = [
    # root
    ("seed_negative", ["seed=-1"], "seed"),
    ("seed_text", ["seed=abc"], "seed"),
    ("seed_above_numpy", ["seed=4294967296"], "seed"),  # 2**32: numpy's ValueError (issue 27 item 9)
    ("seed_eval_above_numpy", ["seed=4294967295"], "seed"),  # the eval env's seed + 1 would be 2**32
    ("seed_workers_above_numpy", ["seed=4294967292", "collector.workers=2"], "seed"),  # worker 1 of 2: seed + 4
    ("total_frames_zero", ["total_frames=0"], "total_frames"),
    ("total_frames_float", ["total_frames=1.5"], "total_frames"),
    ("root_unknown_plus", ["+sead=1"], "sead"),
    ("device_unknown", ["device=tpu"], "device"),
    ("threads_zero", ["threads=0"], "threads"),
    ("resume_override_not_list", ["resume_override=3"], "resume_override"),
    # algo: happo (default)
    ("epochs_float", ["algo.epochs=2.5"], "algo.epochs"),
    ("epochs_zero", ["algo.epochs=0"], "algo.epochs"),
    ("gamma_text", ["algo.gamma=abc"], "algo.gamma"),
    ("gamma_above_one", ["algo.gamma=1.5"], "algo.gamma"),
    ("entropy_text", ["algo.entropy_coeff=abc"], "algo.entropy_coeff"),
    ("entropy_negative", ["algo.entropy_coeff=-0.1"], "algo.entropy_coeff"),
    ("unknown_key_plus", ["+algo.actor_lrr=1e-3"], "algo.actor_lrr"),
    ("unknown_key", ["algo.actor_lrr=1e-3"], "algo.actor_lrr"),
    ("plus_on_existing_key", ["+algo.epochs=3"], "algo.epochs"),
    ("value_loss_typo", ["algo.value_loss=hubr"], "algo.value_loss"),
    ("huber_delta_zero", ["algo.huber_delta=0"], "algo.huber_delta"),
    ("order_typo", ["algo.order=rand"], "algo.order"),
    ("max_grad_norm_zero", ["algo.max_grad_norm=0"], "algo.max_grad_norm"),
    ("value_clip_negative", ["algo.value_clip=-1"], "algo.value_clip"),
    ("share_params_happo", ["algo.share_params=true"], "algo.share_params"),
    ("share_params_haa2c", ["algo=haa2c", "algo.share_params=true"], "algo.share_params"),
    ("share_params_hatrpo", ["algo=hatrpo", "algo.share_params=true"], "algo.share_params"),
    ("minibatches_above_batch", ["algo.num_minibatches=81"], "algo.num_minibatches"),
    ("critic_minibatches_above_batch", ["algo.critic_num_minibatches=500"], "algo.critic_num_minibatches"),
    ("algo_unknown", ["algo=hapo"], "algo"),
    ("algo_name_unknown", ["algo.name=hapo"], "algo.name"),
    ("haa2c_clip_epsilon", ["algo=haa2c", "algo.clip_epsilon=0.2"], "algo.clip_epsilon"),
    # algo: hatrpo, mappo, ippo
    ("hatrpo_max_kl_zero", ["algo=hatrpo", "algo.max_kl=0"], "algo.max_kl"),
    ("hatrpo_shrink_one", ["algo=hatrpo", "algo.shrink=1.0"], "algo.shrink"),
    ("hatrpo_fisher_fraction", ["algo=hatrpo", "algo.fisher_fraction=0"], "algo.fisher_fraction"),
    ("hatrpo_kl_type", ["algo=hatrpo", "algo.kl_type=kl"], "algo.kl_type"),
    ("hatrpo_has_no_epochs", ["algo=hatrpo", "algo.epochs=3"], "algo.epochs"),
    ("hatrpo_cg_float", ["algo=hatrpo", "algo.cg_iterations=2.5"], "algo.cg_iterations"),
    ("mappo_clip_negative", ["algo=mappo", "algo.clip_epsilon=-0.2"], "algo.clip_epsilon"),
    ("mappo_minibatches", ["algo=mappo", "algo.share_params=true", "algo.num_minibatches=100"], "algo.num_minibatches"),
    ("ippo_lambda", ["algo=ippo", "algo.gae_lambda=2"], "algo.gae_lambda"),
    ("ippo_actor_lr", ["algo=ippo", "algo.actor_lr=-1e-3"], "algo.actor_lr"),
    # env: vmas (default), pettingzoo, mamujoco
    ("num_envs_float", ["env.num_envs=16.5"], "env.num_envs"),
    ("num_envs_zero", ["env.num_envs=0"], "env.num_envs"),
    ("env_unknown", ["env=vmas/balanse"], "env"),
    ("vmas_no_agents", ["env.scenario_kwargs.n_agents=0"], "env.scenario_kwargs.n_agents"),
    ("vmas_agents_text", ["env.scenario_kwargs.n_agents=two"], "env.scenario_kwargs.n_agents"),
    ("vmas_team_reward", ["env.team_reward=median"], "env.team_reward"),
    ("vmas_reset_mode", ["env.reset_mode=fast"], "env.reset_mode"),
    ("max_steps_negative", ["env.max_steps=-5"], "env.max_steps"),
    ("env_unknown_key_plus", ["+env.num_env=4"], "env.num_env"),
    ("mpe_no_agents", ["env=pettingzoo/simple_spread", "env.scenario_kwargs.N=0"], "env.scenario_kwargs.N"),
    ("mpe_continuous_text", ["env=pettingzoo/simple_spread", "env.continuous_actions=maybe"], "env.continuous_actions"),
    ("mpe_vmas_key", ["env=pettingzoo/simple_spread", "env.team_reward=sum"], "env.team_reward"),
    ("mamujoco_obs_mode", ["env=mamujoco/halfcheetah_2x3", "env.obs_mode=globl"], "env.obs_mode"),
    ("mamujoco_obsk", ["env=mamujoco/halfcheetah_2x3", "env.agent_obsk=-1"], "env.agent_obsk"),
    # simulator keywords, against the scenario's own defaults or signature (issue 27 items 5 and 8)
    ("vmas_kwarg_not_a_bool", [NAV, "+env.scenario_kwargs.collisions=notabool"], "env.scenario_kwargs.collisions"),
    ("vmas_kwarg_unknown", [NAV, "+env.scenario_kwargs.colisions=false"], "env.scenario_kwargs.colisions"),
    ("vmas_kwarg_count_float", [NAV, "+env.scenario_kwargs.n_lidar_rays=1.5"], "env.scenario_kwargs.n_lidar_rays"),
    ("vmas_kwarg_null", [NAV, "+env.scenario_kwargs.collisions=null"], "env.scenario_kwargs.collisions"),
    ("vmas_balance_kwarg_unknown", ["+env.scenario_kwargs.collisions=false"], "env.scenario_kwargs.collisions"),
    (
        "mamujoco_kwarg_type",
        ["env=mamujoco/halfcheetah_2x3", "+env.env_kwargs.ctrl_cost_weight=abc"],
        "env.env_kwargs.ctrl_cost_weight",
    ),
    (
        "mamujoco_kwarg_unknown",
        ["env=mamujoco/halfcheetah_2x3", "+env.env_kwargs.ctrl_cost=0.2"],
        "env.env_kwargs.ctrl_cost",
    ),
    ("mamujoco_kwarg_reserved", ["env=mamujoco/hopper_3x1", "+env.env_kwargs.max_episode_steps=5"], "env.max_steps"),
    (
        "mpe_kwarg_type",
        ["env=pettingzoo/simple_spread", "env.scenario_kwargs.local_ratio=abc"],
        "env.scenario_kwargs.local_ratio",
    ),
    ("mpe_kwarg_unknown", ["env=pettingzoo/simple_spread", "+env.scenario_kwargs.n=4"], "env.scenario_kwargs.n"),
    ("mpe_kwarg_reserved", ["env=pettingzoo/simple_spread", "+env.scenario_kwargs.max_cycles=10"], "env.max_steps"),
    # model: mlp (default), gru
    ("hidden_sizes_text", ["model.hidden_sizes=[16,a]"], "model.hidden_sizes"),
    ("hidden_sizes_zero", ["model.hidden_sizes=[0]"], "model.hidden_sizes"),
    ("activation_typo", ["model.activation=rel"], "model.activation"),
    ("mlp_has_no_chunks", ["+model.chunk_length=5"], "model.chunk_length"),
    ("model_unknown", ["model=grux"], "model"),
    ("gru_chunk_zero", ["model=gru", "model.chunk_length=0"], "model.chunk_length"),
    ("gru_chunk_vs_rollout", ["model=gru", "model.chunk_length=7"], "model.chunk_length"),
    ("gru_rnn_text", ["model=gru", "model.rnn_hidden_size=abc"], "model.rnn_hidden_size"),
    # 80 steps / chunk 5 = 16 sequence chunks
    (
        "gru_minibatches_vs_chunks",
        ["model=gru", "model.chunk_length=5", "algo.num_minibatches=17"],
        "algo.num_minibatches",
    ),
    # collector, eval, checkpoint, logger
    ("workers_vs_num_envs", ["collector.workers=3"], "collector.workers"),
    ("workers_zero", ["collector.workers=0"], "collector.workers"),
    ("smax_workers", ["env=smax/3m", "collector.workers=2"], "collector.workers"),
    ("smax_ray", ["env=smax/3m", "collector.backend=ray"], "collector.backend"),
    ("collector_backend_text", ["collector.backend=spark"], "collector.backend"),
    ("rollout_steps_text", ["collector.rollout_steps=abc"], "collector.rollout_steps"),
    ("collector_unknown_plus", ["+collector.steps=5"], "collector.steps"),
    ("eval_interval_negative", ["eval.interval=-1"], "eval.interval"),
    ("eval_episodes_text", ["eval.episodes=abc"], "eval.episodes"),
    ("checkpoint_interval_negative", ["checkpoint.interval=-1"], "checkpoint.interval"),
    ("checkpoint_interval_float", ["checkpoint.interval=1.5"], "checkpoint.interval"),
    ("resume_without_replay_no_resume", ["checkpoint.resume_without_replay=true"], "checkpoint.resume_without_replay"),
    (
        "resume_without_replay_on_policy",
        ["checkpoint.resume_without_replay=true", "resume=/no/such/checkpoint.pt"],
        "checkpoint.resume_without_replay",
    ),
    ("video_interval_negative", ["eval.video_interval=-1"], "eval.video_interval"),
    ("video_on_smax", ["env=smax/3m", "eval.video_interval=1"], "eval.video_interval"),
    ("logger_backend", ["logger.backends=[neptune]"], "logger.backends"),
    ("logger_no_backend", ["logger.backends=[]"], "logger.backends"),
    ("progress_bar_text", ["logger.progress_bar=maybe"], "logger.progress_bar"),
]


def classify(message: str, key: str) -> str:
    """The user trial's three classes: (a) names the key and the fix, (b) the key only, (c) bad."""
    names_key = key in message
    names_fix = "Fix:" in message or "Valid choices" in message
    return "a" if names_key and names_fix else ("b" if names_key else "c")


@pytest.fixture(scope="module")
def recipe():
    import harl_torchrl.run.loop  # the one run loop, which recipes/train.py and harl-train call

    return harl_torchrl.run.loop


def _never(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was called: the bad config got past the check")

    return fail


@pytest.mark.parametrize("overrides, key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_fails_before_anything_is_built(recipe, monkeypatch, tmp_path, overrides, key):
    import harl_torchrl.algorithms
    import harl_torchrl.off_policy

    for name in ("make_env", "make_collector"):
        monkeypatch.setattr(recipe, name, _never(name))
    monkeypatch.setattr(harl_torchrl.algorithms, "make_on_policy_components", _never("make_on_policy_components"))
    monkeypatch.setattr(harl_torchrl.off_policy, "make_off_policy_components", _never("make_off_policy_components"))
    with pytest.raises(ConfigError) as info:
        cfg = compose_run_config(CONF, [*TINY, *overrides])
        recipe.run(cfg, tmp_path)
    message = str(info.value)
    assert key in message, message
    assert classify(message, key) == "a", f"names no fix: {message}"
    assert not any(tmp_path.iterdir()), "nothing may be written before the check"


def test_sweep_covers_every_config_group():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)
    named = {key.split(".")[0] for _, _, key in CASES}
    assert {"algo", "env", "model", "collector", "eval", "checkpoint", "logger", "seed", "total_frames"} <= named
    algos = {o.split("=")[1] for _, overrides, _ in CASES for o in overrides if o.startswith("algo=")}
    assert {"haa2c", "hatrpo", "mappo", "ippo"} <= algos  # happo is the default
    envs = {o.split("=")[1].split("/")[0] for _, overrides, _ in CASES for o in overrides if o.startswith("env=")}
    assert {"pettingzoo", "mamujoco"} <= envs  # vmas is the default


def test_the_classifier_can_fail():
    assert classify("algo.epochs must be > 0, got 0. Fix: set algo.epochs=5", "algo.epochs") == "a"
    assert classify("algo.epochs must be > 0, got 0", "algo.epochs") == "b"
    assert classify("TypeError: unsupported operand", "algo.epochs") == "c"


# if a check ever let the run through, it stays a few seconds long
SHORT = ["total_frames=80", "env.num_envs=8", "collector.rollout_steps=10", "eval.episodes=0"]


def _train(*overrides, tmp_path):
    return subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), *SHORT, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["algo.epochs=2.5"], "algo.epochs"),
        (["env=vmas/balanse"], "vmas/balance"),
    ],
    ids=["wrong_type", "unknown_env_config"],
)
def test_command_line_exits_with_one_line(tmp_path, overrides, key):
    out = _train(*overrides, tmp_path=tmp_path)
    assert out.returncode != 0
    assert key in out.stderr and ("Fix:" in out.stderr or "Valid choices" in out.stderr), out.stderr
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_unwritable_output_dir_exits_with_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), *SHORT, f"hydra.run.dir={blocker / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "hydra.run.dir" in out.stderr and "Fix:" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        [NAV, "env.scenario_kwargs.n_agents=3"],
        [NAV, "+env.scenario_kwargs.lidar_range=1"],  # an int where the default is a float
        [NAV, "+env.scenario_kwargs.pos_shaping_factor=0.5"],  # a float where VMAS writes 1 (not a count)
        [NAV, "+env.scenario_kwargs.collisions=false"],
        ["env=mamujoco/halfcheetah_2x3", "+env.env_kwargs.ctrl_cost_weight=0"],
        ["env=mamujoco/hopper_3x1", "+env.env_kwargs.healthy_z_range=[0.5,2.0]"],
        ["env=pettingzoo/simple_spread", "env.scenario_kwargs.local_ratio=1"],
    ],
    ids=["vmas_count", "vmas_int_for_float", "vmas_float_for_int", "vmas_bool", "mujoco_int", "mujoco_list", "mpe_int"],
)
def test_simulator_keywords_that_fit_are_accepted(overrides):
    from harl_torchrl.config import validate_run_config

    validate_run_config(compose_run_config(CONF, [*TINY, *overrides]))
