"""Robustness evaluation: seeded per-modality corruptions of table cells.

:mod:`crossfuse.robustness.corruptions` holds the registry and ``corrupt_column``; the
pixel/waveform and text operations live in ``corruptions_media`` and ``corruptions_text``.
"""
