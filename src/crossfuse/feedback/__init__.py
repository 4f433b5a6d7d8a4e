"""Feedback on served predictions, and refining a model on it.

:class:`FeedbackStore` logs predictions and user corrections; :func:`refine_model`
fine-tunes the live model version on them and promotes the result only if it holds up.
"""

from crossfuse.feedback.refine import RefineResult, refine_model
from crossfuse.feedback.store import (
    FeedbackInputError,
    FeedbackStore,
    default_store_path,
    media_extension,
)

__all__ = [
    "FeedbackInputError",
    "FeedbackStore",
    "RefineResult",
    "default_store_path",
    "media_extension",
    "refine_model",
]
