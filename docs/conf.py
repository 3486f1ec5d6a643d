"""Sphinx configuration of the web edition: the committed notebooks, rendered without executing them.

Built by ``python docs/build.py`` (which copies the chapters next to this file's pages first).
"""
import os

project = "minivbon"
author = "the minivbon authors"
copyright = "2026, the minivbon authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "build.py"]

# notebooks: show the committed outputs, never execute (the book's outputs are checked by nbval instead)
nb_execution_mode = "off"
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath"]
suppress_warnings = ["mystnb.unknown_mime_type"]

# the API page: docstrings in source order, type hints in the signature
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "furo"
html_title = "minivbon: Variational Best-of-N, taught and implemented"
html_static_path = ["_static"] if os.path.isdir(os.path.join(os.path.dirname(__file__), "_static")) else []
# MathJax from a local copy when build.py fetched one (offline builds and CI), else from the default CDN
if os.environ.get("MINIVBON_MATHJAX_LOCAL"):
    mathjax_path = "mathjax/tex-chtml.js"
