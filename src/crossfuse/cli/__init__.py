"""The `crossfuse` command line."""

from crossfuse.cli.app import app, main

__all__ = ["app", "main"]
