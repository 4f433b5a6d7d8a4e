"""Serving a trained model over HTTP: predictions, feedback and a small web page.

>>> from crossfuse.serve import ServeConfig, create_app
>>> app = create_app("model/", ServeConfig(max_upload_bytes=5 * 1024 * 1024))
"""

from __future__ import annotations

from crossfuse.serve.app import create_app
from crossfuse.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
