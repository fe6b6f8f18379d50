"""The recipe configs (Hydra YAMLs), shipped with the package.

``harl-train`` and ``harl-evaluate`` compose them from here (``pkg://harl_torchrl.conf``);
``recipes/conf`` is a link to this folder, so the recipe scripts read the same files.
"""
