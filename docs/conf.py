"""Sphinx configuration of awkgen's API reference (``make docs``).

The reference is built from the docstrings (autodoc; Google-style sections through
napoleon). ``make docs`` builds it with every warning an error and every
cross-reference checked (``-W --keep-going -n``), and runs the doctests of the
pages and of the docstrings they include (``sphinx-build -b doctest``).
"""

from __future__ import annotations

import doctest
import os
import sys

# Importing the framework bridges' docstrings may import TensorFlow: keep its start-up chatter out.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The checkout's awkgen, also when Sphinx runs outside an environment that installed it.
sys.path.insert(0, os.path.abspath(".."))

import awkgen  # noqa: E402

project = "awkgen"
author = "the awkgen authors"
copyright = "2026, the awkgen authors"
release = version = awkgen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
]

root_doc = "index"
exclude_patterns = ["_build"]
# furo: a maintained theme whose sidebar shows the whole navigation (the guide and the reference)
# and whose code blocks scroll within themselves instead of running off the page.
html_theme = "furo"
html_title = f"awkgen {release}"
html_static_path = ["_static"]
html_css_files = ["awkgen.css"]

# Signatures show the annotations; parameters, returns and raises come from the docstrings.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True
python_use_unqualified_type_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -n checks every cross-reference. There is no intersphinx (the build runs offline), so names
# in other packages (numpy.ndarray, keras.utils.PyDataset, ...) cannot resolve: those are let
# through. Any other reference that does not resolve (into awkgen, a method) fails the build.
_EXTERNAL = ("numpy", "np", "collections", "typing", "types", "abc", "os", "multiprocessing", "keras", "tf",
             "tensorflow", "torch", "jax", "ray", "art", "mxnet", "PIL")
nitpick_ignore_regex = [(r"py:.*", rf"({'|'.join(_EXTERNAL)})(\..*)?")]
# What as_torch() and as_keras() return, as type checkers see them: classes declared only for them
# (under TYPE_CHECKING), documented with the functions.
nitpick_ignore = [("py:class", "TorchStream"), ("py:class", "KerasStream")]

# The doctests of the docstrings assume what pytest's --doctest-modules gives them.
doctest_global_setup = """
import numpy as np
import awkgen
"""
# As pytest runs them (setup.cfg: doctest_optionflags).
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public_bases(app, name, obj, options, bases):
    """Show a private base class (``_RestartingGenerator``) as its nearest public ancestor."""
    for i, base in enumerate(bases):
        while isinstance(base, type) and base.__name__.startswith("_"):
            base = base.__bases__[0]
        bases[i] = base


def setup(app):
    app.connect("autodoc-process-bases", _public_bases)
    # napoleon reads a property's docstring as "type: description", so "Batches per epoch: ..."
    # would render with a type named "Batches per epoch". Properties take their type from the
    # annotation: leave their docstrings to plain reST.
    from sphinx.ext import napoleon

    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)

            def process(app, what, name, obj, options, lines):
                if what not in ("property", "attribute", "data"):
                    napoleon._process_docstring(app, what, name, obj, options, lines)

            app.connect("autodoc-process-docstring", process, priority=listener.priority)
