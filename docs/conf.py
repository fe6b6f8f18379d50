"""Sphinx configuration for harl_torchrl."""

import os
import socket
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import harl_torchrl

project = "harl_torchrl"
author = "harl_torchrl developers"
copyright = "2026, harl_torchrl developers"
release = harl_torchrl.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: math renders without a CDN
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "harl_docs",  # docs/_ext: real class signatures, public-name tables, config tables
    "harl_benchmark_plots",  # docs/_ext: the benchmarks page's rliable figures, from recipes/results
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = False

# Executed tutorials: docs/tutorials/*.py run at build time (tiny budgets, one thread),
# their printed output and figures on the page.
torch.set_num_threads(1)
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "generated/tutorials",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1,
    "abort_on_example_error": True,
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "tutorials/GALLERY_HEADER.rst"]
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
