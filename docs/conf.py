"""Sphinx configuration for harl_torchrl."""

import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harl_torchrl

project = "harl_torchrl"
author = "harl_torchrl developers"
copyright = "2026, harl_torchrl developers"
release = harl_torchrl.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "furo" if "furo" in sys.modules or __import__("importlib").util.find_spec("furo") else "alabaster"
html_title = f"harl_torchrl {release}"


def _online(host: str = "docs.pytorch.org") -> bool:
    """Intersphinx needs the inventories; a machine without network builds without links."""
    if os.environ.get("HARL_DOCS_OFFLINE"):
        return False
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "tensordict": ("https://docs.pytorch.org/tensordict/stable", None),
        "torchrl": ("https://docs.pytorch.org/rl/stable", None),
    }
    if _online()
    else {}
)
