"""MkDocs hook: formulas render without internet.

The site loads MathJax from its own files, not from a CDN (clusters often
have no internet): after the build this hook copies MathJax 2, as shipped in
the ``jupyter-server-mathjax`` package (the ``docs`` extra), into
``javascripts/mathjax/`` of the site. ``docs/javascripts/mathjax-config.js``
configures it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TARGET = Path("javascripts") / "mathjax"


def mathjax_dir() -> Path:
    """The folder holding ``MathJax.js`` in the installed package."""
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def on_post_build(config):
    """Copy MathJax into the built site."""
    target = Path(config["site_dir"]) / TARGET
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(mathjax_dir(), target)
