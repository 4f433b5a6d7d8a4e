"""A single self-contained HTML report of a model: data, training, scores, robustness.

``render_report(data, path)`` turns a plain dict (gathered by the CLI from a model
directory and an evaluation) into one HTML file with embedded plots and media.
"""

from crossfuse.report.render import SECTIONS, build_html, render_report

__all__ = ["SECTIONS", "build_html", "render_report"]
