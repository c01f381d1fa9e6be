"""Sphinx configuration of the hpcallbacks documentation (``make docs``; offline, warnings are errors)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))
for key, value in {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(key, value)

import hpdocs  # noqa: E402

import hpcallbacks  # noqa: E402

project = "hpcallbacks"
author = "the hpcallbacks authors"
copyright = "the hpcallbacks authors, Apache-2.0"
release = version = hpcallbacks.__version__

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "sphinx_copybutton",
    "hpdocs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext", "_generated/*.rst", "**/.ipynb_checkpoints"]
templates_path: list[str] = []
root_doc = "index"

# -- checked like code: every cross-reference must resolve (a renamed class breaks the build) --------------
nitpicky = True
# Names of other projects: not documented here, and no inventory is fetched (the build is offline).
# Only external packages are listed; an hpcallbacks name is never ignored.
nitpick_ignore_regex = hpdocs.NITPICK_IGNORE_REGEX  # the packages listed in hpdocs.EXTERNAL

# -- autodoc ------------------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = False
autodoc_inherit_docstrings = False
add_module_names = False
python_maximum_signature_line_length = 100

# -- Markdown guides ----------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings: list[str] = []

# -- HTML ---------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"hpcallbacks {release}"
html_static_path = ["_static"]
html_css_files = ["hpdocs.css"]
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
