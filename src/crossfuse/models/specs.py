"""What the model needs to know from the fitted preprocessing: input specs and task specs."""

from __future__ import annotations

from crossfuse.data.preprocessor import TABULAR, Preprocessor
from crossfuse.encoders import InputSpec
from crossfuse.models.fusion_model import TaskSpec


def input_specs(pre: Preprocessor) -> list[InputSpec]:
    """One :class:`InputSpec` per model input, in sorted order."""
    specs = []
    for name, modality in sorted(pre.inputs.items()):
        if name == TABULAR and pre.tabular is not None:
            specs.append(
                InputSpec(
                    name,
                    TABULAR,
                    n_numeric=len(pre.tabular.numeric),
                    cardinalities=pre.tabular.cardinalities,
                )
            )
        else:
            proc = pre.columns[name]
            specs.append(
                InputSpec(
                    name,
                    modality,
                    vocab_size=getattr(proc, "vocab_size", 0),
                    shape=tuple(getattr(proc, "output_shape", ())),
                    processor=proc.processor_name,
                )
            )
    return specs


def task_specs(pre: Preprocessor) -> list[TaskSpec]:
    """One :class:`TaskSpec` per label, in the schema's label order."""
    return [
        TaskSpec(col, str(enc.task), enc.num_classes if enc.task == "classification" else 1)
        for col, enc in pre.labels.items()
    ]
