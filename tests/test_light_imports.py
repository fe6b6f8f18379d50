"""Importing the library's building blocks loads neither Hydra nor anything a recipe alone needs."""

import subprocess
import sys


def test_the_library_imports_without_hydra():
    code = (
        "import sys, harl_torchrl, harl_torchrl.objectives, harl_torchrl.modules, harl_torchrl.sequential, "
        "harl_torchrl.envs, harl_torchrl.config; "
        "assert 'hydra' not in sys.modules, sorted(m for m in sys.modules if m.startswith('hydra'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_store_schemas_gives_hydra_every_registered_schema():
    from hydra.core.config_store import ConfigStore

    from harl_torchrl.config import ALGO_SCHEMAS, ENV_SCHEMAS, MODEL_SCHEMAS, store_schemas

    store_schemas()
    store_schemas()  # idempotent
    store = ConfigStore.instance()
    for group, registry in (("algo", ALGO_SCHEMAS), ("env", ENV_SCHEMAS), ("model", MODEL_SCHEMAS)):
        assert set(store.list(f"schema/{group}")) >= {f"{key}.yaml" for key in registry}
    assert "root.yaml" in store.list("schema/run")
