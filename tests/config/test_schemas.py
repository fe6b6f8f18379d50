"""The typed config schemas: the YAMLs inherit them, the typed object reads back, library paths convert."""

import dataclasses
import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from harl_torchrl.config import (
    ALGO_SCHEMAS,
    ENV_SCHEMAS,
    MODEL_SCHEMAS,
    AlgoConfig,
    EnvConfig,
    GRUModelConfig,
    HAPPOConfig,
    HATRPOConfig,
    MLPModelConfig,
    RunConfig,
    algo_config,
    config_to_dict,
    model_config,
    register_algo,
    typed_run_config,
    validate_run_config,
)
from harl_torchrl.config.hydra_checks import OutputDirCheck, compose_run_config, group_options
from harl_torchrl.config.on_policy import Order
from harl_torchrl.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "recipes" / "conf"


def _yaml_values(group, option):
    values = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))
    values.pop("defaults")
    return values


def _yaml_schema(group, option):
    """The schema a group YAML inherits: the first entry of its defaults list, ``/schema/<group>/<key>@_here_``."""
    first = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))["defaults"][0]
    match = re.fullmatch(rf"/schema/{group}/(\w+)@_here_", first)
    assert match, f"{group}={option} does not inherit its schema first: {first!r}"
    return {"algo": ALGO_SCHEMAS, "env": ENV_SCHEMAS, "model": MODEL_SCHEMAS}[group][match.group(1)]


@pytest.mark.parametrize("group", ["algo", "env", "model"])
def test_every_yaml_composes_to_its_schema_with_its_own_values(group):
    for option in group_options(CONF, group):
        cfg = compose_run_config(CONF, [f"{group}={option}"])
        typed = typed_run_config(cfg)
        node = getattr(typed, group)
        assert type(node).__name__.endswith("Config") and OmegaConf.get_type(cfg[group]) is type(node)
        plain = node.to_dict()
        for key, value in _yaml_values(group, option).items():
            assert plain[key] == value, f"{group}={option}: {key}"


@pytest.mark.parametrize("group", ["algo", "env", "model"])
def test_no_yaml_repeats_a_default_of_its_schema(group):
    """The schema is the one source of every default: a group YAML sets only what differs from it."""
    for option in group_options(CONF, group):
        defaults = _yaml_schema(group, option).defaults()
        values = _yaml_values(group, option)
        repeated = sorted(key for key, value in values.items() if defaults.get(key, object()) == config_to_dict(value))
        assert not repeated, f"{group}={option} repeats its schema's defaults {repeated}: delete them from the YAML"


def test_root_schema_defaults_are_the_yaml_values():
    root = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    for key in ("defaults", "hydra"):
        root.pop(key)
    defaults = RunConfig().to_dict()
    assert {k: defaults[k] for k in root} == root


def test_schema_is_enforced_at_compose_time():
    with pytest.raises(ConfigError, match=r"algo\.epochs=2\.5 has the wrong type: expected an integer"):
        compose_run_config(CONF, ["algo.epochs=2.5"])
    with pytest.raises(ConfigError, match="expected one of random, fixed"):
        compose_run_config(CONF, ["algo.order=rand"])


def test_typed_run_config_is_built_of_schema_instances():
    run = validate_run_config(compose_run_config(CONF, ["algo=hatrpo", "model=gru", "env=pettingzoo/simple_spread"]))
    assert isinstance(run.algo, HATRPOConfig) and isinstance(run.model, GRUModelConfig)
    assert run.env.family == "pettingzoo" and run.env.scenario_kwargs == {"N": 3, "local_ratio": 0.5}
    assert run.model.sequence_length == 10 and MLPModelConfig().sequence_length is None
    assert validate_run_config(run) is run  # already typed: checked, not rebuilt


def test_choices_read_as_strings():
    algo = HAPPOConfig()
    assert algo.order == "random" and str(algo.order) == "random" and f"{algo.order}" == "random"
    assert isinstance(algo.order, Order) and algo.order in ("random", "fixed")
    assert config_to_dict(algo)["order"] == "random" and type(config_to_dict(algo)["order"]) is str


def test_a_group_is_not_a_mapping_library_code_reads_attributes():
    # one way to read a typed config: attributes (the Mapping face invited .get(key, default) shims)
    cfg = HAPPOConfig()
    assert not isinstance(cfg, Mapping)
    with pytest.raises(TypeError):
        cfg["epochs"]
    assert cfg.epochs == 5 and cfg.to_dict()["epochs"] == 5


def test_plain_dicts_are_checkpoint_safe_and_groups_pickle():
    run = validate_run_config(compose_run_config(CONF, []))
    buffer = io.BytesIO()
    torch.save({k: config_to_dict(getattr(run, k)) for k in ("algo", "env", "model")}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["algo"]["value_loss"] == "huber" and loaded["env"]["scenario_kwargs"] == {"n_agents": 4}
    assert pickle.loads(pickle.dumps(run.env)) == run.env  # collector worker processes receive it


def test_library_mapping_goes_through_the_same_schema():
    assert algo_config({"name": "happo", "epochs": 3}).epochs == 3
    assert algo_config({"name": "happo"}).max_grad_norm == 10.0  # omitted keys: the YAML's values
    with pytest.raises(ConfigError, match=r"algo\.epochs='abc' has the wrong type"):
        algo_config({"name": "happo", "epochs": "abc"})
    with pytest.raises(ConfigError, match=r"unknown setting algo\.actor_lrr.*Did you mean algo\.actor_lr"):
        algo_config({"name": "happo", "actor_lrr": 1e-3})
    with pytest.raises(ConfigError, match=r"model\.activation='rel' is not a valid choice"):
        model_config({"activation": "rel"})


def test_components_refuse_a_bad_dict_before_building_anything(monkeypatch):
    import harl_torchrl.algorithms as algorithms

    def never(*args, **kwargs):
        raise AssertionError("networks were built")

    monkeypatch.setattr(algorithms, "make_actors", never)
    with pytest.raises(ConfigError, match=r"algo\.epochs=2\.5 has the wrong type"):
        algorithms.make_on_policy_components({"name": "happo", "epochs": 2.5}, {}, env=None)
    with pytest.raises(ConfigError, match=r"model\.hidden_sizes must be a non-empty list"):
        algorithms.make_on_policy_components({"name": "happo"}, {"hidden_sizes": [0]}, env=None)


def test_registration_hook_adds_an_algorithm_the_run_check_dispatches_to():
    calls = []

    @register_algo
    @dataclasses.dataclass
    class ToyConfig(AlgoConfig):
        name: str = "toy_for_test"
        kind = "off_policy"
        batch_size: int = 8

        def validate(self):
            self.require_positive("batch_size")

        def validate_run(self, run):
            calls.append(run.env.num_envs)

    try:
        cfg = {"algo": {"name": "toy_for_test"}, "env": {"family": "vmas", "scenario": "balance"}, "model": {}}
        run = validate_run_config(cfg)
        assert isinstance(run.algo, ToyConfig) and run.algo.kind == "off_policy" and calls == [32]
        with pytest.raises(ConfigError, match=r"algo\.batch_size must be > 0"):
            validate_run_config({**cfg, "algo": {"name": "toy_for_test", "batch_size": 0}})
    finally:
        del ALGO_SCHEMAS["toy_for_test"]


@pytest.mark.parametrize("family", sorted(ENV_SCHEMAS))
def test_every_registered_env_schema_builds_its_env(family):
    schema = ENV_SCHEMAS[family]
    assert schema.make is not EnvConfig.make, f"env.family={family}: {schema.__name__} needs a make() of its own"


def test_output_dir_check_exits_with_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = OmegaConf.create({"hydra": {"run": {"dir": str(blocker / "run")}}})
    with pytest.raises(SystemExit, match=r"hydra\.run\.dir=.* is not a writable directory.*Fix:"):
        OutputDirCheck().on_run_start(cfg)
    cfg.hydra.run.dir = str(tmp_path / "fine")
    OutputDirCheck().on_run_start(cfg)
    assert (tmp_path / "fine").is_dir()
