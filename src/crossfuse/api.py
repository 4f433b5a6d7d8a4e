"""FusionPredictor: the user-facing facade (fit / predict / predict_proba / evaluate / save / load).

>>> predictor = FusionPredictor(label="label", fusion="concat").fit("train.csv")
>>> predictor.evaluate("test.csv")["tasks"]["label"]["accuracy"]
>>> predictor.save("model/")
>>> FusionPredictor.load("model/").predict_proba("new.csv")
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crossfuse.config import CrossfuseConfig, from_dict, load_yaml, to_dict
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.schema import Schema, infer_schema
from crossfuse.data.split import split_train_valid
from crossfuse.data.table import Table, TableLike, read_table
from crossfuse.device import resolve_device
from crossfuse.errors import ConfigError, CrossfuseError, ModelDirError
from crossfuse.evaluation.evaluate import evaluate_model
from crossfuse.evaluation.explain import explain_rows
from crossfuse.model_dir import TB_DIR, fingerprint, read_model_dir, write_model_dir
from crossfuse.models import FusionModel, build_model
from crossfuse.models.inference import run_inference
from crossfuse.models.plan import processor_plan
from crossfuse.models.specs import input_specs, task_specs
from crossfuse.presets import merge, preset_config
from crossfuse.robustness.curves import LEVELS, add_reference, robustness_curves

if TYPE_CHECKING:
    from crossfuse.distill import DistillConfig

ConfigLike = CrossfuseConfig | Mapping[str, Any] | str | Path | None


class FusionPredictor:
    """Train, evaluate, save and load a model that fuses a table's modalities.

    Args:
        label: label column, or several for multitask training.
        problem_type: ``"classification"`` or ``"regression"``; inferred when None.
        fusion: registered fusion name (``weighted``, ``concat``, ``late``, ...).
        encoders: per input or per modality, an encoder name or an encoder config dict,
            e.g. ``{"image": "image-cnn", "text": {"dim": 64}}``.
        config: a :class:`CrossfuseConfig`, a dict of the same shape, or a YAML path.
        modalities: ``{column: modality}`` overrides of the inferred schema
            (``"ignore"`` drops a column).
        preset: ``"fast"`` (from-scratch encoders), ``"pretrained"`` (frozen MiniLM,
            EfficientNet-Lite0 and a spectrogram CNN, cached) or ``"finetune"``
            (the same, last blocks trained); ``config`` is merged over it.
        device: ``auto`` (CUDA, then MPS, then CPU), or e.g. ``cpu``, ``cuda:1``.
        progress: show progress bars while training.
    """

    def __init__(
        self,
        label: str | Sequence[str],
        problem_type: str | None = None,
        fusion: str | None = None,
        encoders: Mapping[str, str | Mapping[str, Any]] | None = None,
        config: ConfigLike = None,
        *,
        modalities: Mapping[str, str] | None = None,
        preset: str | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.label = label
        self.problem_type = problem_type
        self.fusion = fusion
        self.encoders = encoders
        self.config = config
        self.modalities = modalities
        self.preset = preset
        self.device = device
        self.progress = progress
        self.version_ = "1"  # the model directory version loaded (versions/N), see load()

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: TableLike,
        valid: TableLike | None = None,
        *,
        epochs: int | None = None,
        time_limit: float | None = None,
        seed: int | None = None,
        devices: int | None = None,
        num_nodes: int | None = None,
        strategy: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        checkpoint_every: int | None = None,
    ) -> FusionPredictor:
        """Train on ``train``; ``valid`` (or a stratified part of it) selects the best epoch.

        Args:
            devices, num_nodes, strategy: processes per node, machines, and ``"ddp"``
                (the same as ``train.devices`` etc. in the config). With more than one
                process Lightning's DDP re-runs the calling script once per extra process
                (or give the processes with ``torchrun``); every process trains, and only
                rank 0 writes in :meth:`save` (see :attr:`is_global_zero`).
            run_dir: keep a checkpoint after every epoch (weights, optimizer, schedule,
                RNG, epoch/step) and the TensorBoard logs in this folder.
            resume: continue the interrupted run in ``run_dir`` from its last checkpoint
                (give the same tables and settings as the first call).
            checkpoint_every: with ``run_dir``, also checkpoint every this many optimizer
                steps inside an epoch, so a resumed run redoes at most that many batches
                (``train.checkpoint_every`` in the config).
        """
        from crossfuse.training.fit import fit_model

        if checkpoint_every is not None and run_dir is None:
            raise ConfigError("checkpoint_every needs a run directory (run_dir / --run-dir)")
        config, schema, train_table, train_part, valid_part, pre, model = self._prepare(
            train,
            valid,
            epochs,
            time_limit,
            seed,
            placement={
                "devices": devices,
                "num_nodes": num_nodes,
                "strategy": strategy,
                "checkpoint_every": checkpoint_every,
            },
        )
        if run_dir is not None:
            _check_run_data(Path(run_dir), fingerprint(train_table.df), resume)
        self._log_root = tempfile.TemporaryDirectory(prefix="crossfuse-")
        log_dir = Path(run_dir) / TB_DIR if run_dir else Path(self._log_root.name) / TB_DIR
        self._tensorboard_dir = log_dir
        result = fit_model(
            model,
            pre,
            train_part,
            valid_part,
            config.train,
            log_dir=log_dir,
            progress=self.progress,
            strict=config.data.strict,
            device=resolve_device(self.device),
            run_dir=Path(run_dir) if run_dir else None,
            resume=resume,
        )
        self.global_rank_, self.world_size_ = result.global_rank, result.world_size
        self.config_, self.schema_, self.preprocessor_ = config, schema, pre
        self.model_: FusionModel = model.to(resolve_device(self.device)).eval()
        self.problems_ = result.problems
        self.fit_summary_ = {
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "monitor": result.monitor,
            "best_score": result.best_score,
            "train_seconds": round(result.seconds, 2),
            "train_rows": len(train_part),
            "valid_rows": len(valid_part),
            "problems": len(result.problems),
            "cache": result.cache,
            "encode_seconds": round(result.encode_seconds, 2),
            "epoch_seconds": [round(x, 2) for x in result.epoch_seconds],
            "history": result.history,
            "processes": result.world_size,
        }
        self.fingerprint_ = fingerprint(train_table.df)
        self.metrics_ = {
            "valid": evaluate_model(model, pre, valid_part, cached=result.cached_valid)
        }
        return self

    def distill(
        self,
        teacher: FusionPredictor | str | Path,
        train: TableLike,
        valid: TableLike | None = None,
        *,
        config: DistillConfig | Mapping[str, Any] | None = None,
        epochs: int | None = None,
        time_limit: float | None = None,
        seed: int | None = None,
    ) -> FusionPredictor:
        """Train this predictor as a student of a trained ``teacher`` (knowledge distillation).

        The student's own config, preset, fusion and modalities (possibly a subset of the
        teacher's inputs) come from this predictor, as for :meth:`fit`; its label must be
        one of the teacher's. Rows of ``train`` with an empty label learn from the
        teacher's soft targets alone; ``valid`` (or a part of the labelled rows) selects
        the best epoch. The teacher runs once per row; the saved student does not need it.

        Args:
            teacher: a trained FusionPredictor or its model directory.
            config: a :class:`~crossfuse.distill.DistillConfig` or a dict of its fields.
        """
        from crossfuse.distill import distill_predictor

        return distill_predictor(
            self,
            teacher,
            train,
            valid,
            config=config,
            epochs=epochs,
            time_limit=time_limit,
            seed=seed,
        )

    def precompute(
        self, train: TableLike, valid: TableLike | None = None, *, seed: int | None = None
    ) -> dict[str, dict[str, int]]:
        """Fill the embedding cache for the frozen encoders, exactly as :meth:`fit` would.

        Give the same tables (and seed) as the later ``fit``: a training run then reads
        every frozen encoder's features from the cache. Returns, per cached input, how
        many cells were encoded now and how many were already cached.
        """
        from crossfuse.training.cached_inputs import cache_table, cacheable_inputs

        config, _, _, train_part, valid_part, pre, model = self._prepare(
            train, valid, None, None, seed
        )
        columns = cacheable_inputs(model, pre, config.train)
        if not columns:
            raise CrossfuseError(
                "nothing to cache: no encoder is frozen (or caching is off); use "
                "preset='pretrained' or an encoder config with finetune: frozen"
            )
        device = resolve_device(self.device)
        summary = {c: {"encoded": 0, "reused": 0} for c in columns}
        for table in (train_part, valid_part):
            for col, ref in cache_table(
                model, pre, table, columns, config.train, device=device
            ).items():
                summary[col]["encoded"] += ref.encoded
                summary[col]["reused"] += ref.reused
        return summary

    def _prepare(
        self,
        train,
        valid,
        epochs,
        time_limit,
        seed,
        *,
        task=None,
        overrides: Mapping[str, str] | None = None,
        split=split_train_valid,
        fit_labels: Callable[[Preprocessor, Table], None] | None = None,
        placement: Mapping[str, Any] | None = None,
    ):
        """Config, schema, tables, fitted preprocessing and a fresh (seeded) model.

        For distillation: ``task`` and ``overrides`` replace ``problem_type`` and
        ``modalities``; ``split`` holds out the validation part when ``valid`` is None;
        ``fit_labels(pre, train_part)`` sets the label encoders instead of fitting them
        on the training part. ``placement`` overrides ``train.devices``, ``num_nodes``,
        ``strategy`` and ``checkpoint_every`` (None values leave the config's).
        """
        import lightning.pytorch as pl

        config = self._resolve_config(epochs, time_limit, seed, placement)
        train_table = read_table(train)
        schema = infer_schema(
            train_table.df,
            self.label,
            base_dir=train_table.base_dir,
            overrides=self.modalities if overrides is None else overrides,
            task=self.problem_type if task is None else task,
        )
        if valid is None:
            train_part, valid_part = split(
                train_table, schema, config.train.valid_fraction, config.train.seed
            )
        else:
            train_part, valid_part = train_table, read_table(valid)
        pre = Preprocessor(schema, config.data, processor_plan(schema, config.model))
        pre.fit(train_part, labels=fit_labels is None)
        if fit_labels is not None:
            fit_labels(pre, train_part)
        pl.seed_everything(config.train.seed, workers=True, verbose=False)
        model = build_model(input_specs(pre), task_specs(pre), config.model)
        return config, schema, train_table, train_part, valid_part, pre, model

    def _resolve_config(
        self,
        epochs: int | None,
        time_limit: float | None,
        seed: int | None,
        placement: Mapping[str, Any] | None = None,
    ) -> CrossfuseConfig:
        if isinstance(self.config, CrossfuseConfig):
            data = to_dict(self.config)
        elif isinstance(self.config, str | Path):
            data = load_yaml(self.config)
        else:
            data = dict(self.config or {})
        if self.preset is not None:
            data = merge(preset_config(self.preset), data)
        model = dict(data.get("model", {}))
        if self.fusion is not None:
            model["fusion"] = self.fusion
        encoders = dict(model.get("encoders", {}))
        for key, value in (self.encoders or {}).items():
            encoders[key] = {"name": value} if isinstance(value, str) else dict(value)
        model["encoders"] = encoders
        train: dict[str, Any] = dict(data.get("train", {}))
        overrides: dict[str, Any] = {"epochs": epochs, "time_limit": time_limit, "seed": seed}
        overrides.update(placement or {})
        for key, value in overrides.items():
            if value is not None:
                train[key] = value
        return from_dict(CrossfuseConfig, {**data, "model": model, "train": train})

    # ---------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise CrossfuseError("this FusionPredictor is not trained yet; call fit() or load()")

    def _table(self, data: TableLike) -> Table:
        self._check_fitted()
        return read_table(data)

    def predict_proba(self, data: TableLike) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Class probabilities, one column per class (a dict of frames when multitask)."""
        table = self._table(data)
        inf = run_inference(self.model_, self.preprocessor_, table, labels=False)
        frames = {}
        for col, enc in self.preprocessor_.labels.items():
            if enc.task != "classification":
                continue
            frames[col] = pd.DataFrame(inf.scores[col].numpy(), columns=list(enc.classes))
        if not frames:
            raise CrossfuseError("predict_proba needs a classification label; use predict()")
        return frames[self._labels[0]] if len(self._labels) == 1 else frames

    def predict(self, data: TableLike, explain: bool = False) -> pd.Series | pd.DataFrame:
        """Predicted class (or value) per row; one column per label when multitask.

        With ``explain=True`` a frame with the prediction(s) plus, per input,
        ``influence_<input>`` (how much hiding that input lowers the predicted class's
        probability, or moves the predicted value) and ``top_modality`` (the input that
        changed the prediction most).
        """
        table = self._table(data)
        if explain:
            inf, influence = explain_rows(self.model_, self.preprocessor_, table)
        else:
            inf = run_inference(self.model_, self.preprocessor_, table, labels=False)
        out: dict[str, Any] = {}
        for col, enc in self.preprocessor_.labels.items():
            scores = inf.scores[col].numpy()
            if enc.task == "classification":
                out[col] = [enc.decode(int(i)) for i in scores.argmax(axis=1)]
            else:
                out[col] = enc.unscale(scores.astype(np.float64))
        if explain:
            return pd.concat([pd.DataFrame(out), influence], axis=1)
        if len(self._labels) == 1:
            return pd.Series(out[self._labels[0]], name=self._labels[0])
        return pd.DataFrame(out)

    def evaluate(
        self,
        data: TableLike,
        ablate: bool = False,
        robustness: bool = False,
        *,
        corruptions: dict[str, list[str]] | None = None,
        levels: list[float] | None = None,
        reference: FusionPredictor | dict[str, Any] | None = None,
        seed: int = 0,
        chunk_rows: int | None = None,
    ) -> dict[str, Any]:
        """Metrics on a labelled table.

        Args:
            ablate: add each modality removed and each alone (``result["ablation"]``).
            robustness: add the metric as each modality is corrupted in 0–90% of rows
                (``result["robustness"]``; see :mod:`crossfuse.robustness.curves`).
            corruptions: {input or modality: corruption names} to run instead of all.
            levels: the fractions of corrupted rows (default 0.0, 0.1, …, 0.9).
            reference: a predictor (usually ``late`` fusion) or its robustness result,
                for the effective robustness (the gap to its curves).
            seed: which rows are corrupted, and the corruption noise.
            chunk_rows: read and score the table this many rows at a time, so a table
                larger than memory can be evaluated (same metrics as the whole table).
                Robustness curves need the whole table, so not with ``robustness``.
        """
        if chunk_rows is not None:
            from crossfuse.data.stream import iter_table
            from crossfuse.errors import ConfigError
            from crossfuse.evaluation.streaming import evaluate_stream

            if robustness:
                raise ConfigError(
                    "robustness curves need the whole table; drop chunk_rows "
                    f"(got chunk_rows={chunk_rows!r}) or robustness=True"
                )
            self._check_fitted()
            chunks = iter_table(data, chunk_rows=chunk_rows)
            return evaluate_stream(
                self.model_,
                self.preprocessor_,
                chunks,
                ablate=ablate,
                strict=self.config_.data.strict,
            )
        table = self._table(data)
        result = evaluate_model(
            self.model_, self.preprocessor_, table, ablate=ablate, strict=self.config_.data.strict
        )
        if robustness:
            result["robustness"] = self.robustness(
                table, corruptions=corruptions, levels=levels, reference=reference, seed=seed
            )
        return result

    def robustness(
        self,
        data: TableLike,
        *,
        corruptions: dict[str, list[str]] | None = None,
        levels: list[float] | None = None,
        reference: FusionPredictor | dict[str, Any] | None = None,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Robustness curves alone (what ``evaluate(robustness=True)`` adds)."""
        self._check_fitted()
        table = data if isinstance(data, Table) else self._table(data)
        result = robustness_curves(
            self.model_,
            self.preprocessor_,
            table,
            levels=LEVELS if levels is None else levels,
            corruptions=dict(corruptions) if corruptions else None,
            seed=seed,
            progress=progress,
        )
        if reference is not None:
            if isinstance(reference, FusionPredictor):
                name = reference.config_.model.fusion
                reference = reference.robustness(
                    table, corruptions=corruptions, levels=levels, seed=seed
                )
            else:
                name = reference.get("name", "reference")
            add_reference(result, reference, name)
        return result

    def extract_embedding(
        self,
        data: TableLike,
        fused: bool = True,
        *,
        chunk_rows: int | None = None,
        out: str | Path | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The fused representation (N, H), or per-input pooled embeddings if ``fused=False``.

        Args:
            chunk_rows: read the table this many rows at a time (bounds the memory for
                reading and decoding; the returned arrays still hold every row).
            out: a ``.npy`` path: the float32 embeddings are written there chunk by
                chunk (``chunk_rows``, default 50,000, at a time), never all in memory,
                and a read-only memmap of the file is returned. With ``fused=False``,
                one ``<stem>.<input>.npy`` per input beside it, returned as a dict.
                Each file appears only when complete.
        """
        from crossfuse.data.stream import DEFAULT_CHUNK_ROWS, iter_table
        from crossfuse.evaluation.streaming import iter_embeddings, save_embeddings

        self._check_fitted()
        if out is not None:
            rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
            model, pre = self.model_, self.preprocessor_
            return save_embeddings(model, pre, data, out, fused=fused, chunk_rows=rows)
        chunks = (
            [self._table(data)] if chunk_rows is None else iter_table(data, chunk_rows=chunk_rows)
        )
        parts = list(iter_embeddings(self.model_, self.preprocessor_, chunks, fused=fused))
        if not parts:
            return np.zeros((0, 0), np.float32) if fused else {}
        if len(parts) > 1:
            parts = [{k: np.concatenate([p[k] for p in parts]) for k in parts[0]}]
        return parts[0]["fused"] if fused else parts[0]

    @property
    def _labels(self) -> list[str]:
        return list(self.preprocessor_.labels)

    @property
    def class_labels(self) -> list[Any] | dict[str, list[Any]]:
        """The classes of the (first) classification label, in probability-column order."""
        self._check_fitted()
        classes = {c: e.classes for c, e in self.preprocessor_.labels.items()}
        return classes[self._labels[0]] if len(classes) == 1 else classes

    # ------------------------------------------------------------------- storage
    @property
    def is_global_zero(self) -> bool:
        """False in the extra processes of a DDP fit: only rank 0 writes files."""
        return getattr(self, "global_rank_", 0) == 0

    def save(self, path: str | Path) -> Path:
        """Write the model directory (``crossfuse.json``, ``model.safetensors``, ...).

        In a DDP job only rank 0 writes; the other processes return ``path`` untouched.
        """
        self._check_fitted()
        if not self.is_global_zero:
            return Path(path)
        meta = {
            "label": self.label,
            "schema": self.schema_.to_dict(),
            "classes": {c: e.classes for c, e in self.preprocessor_.labels.items()},
            "config": to_dict(self.config_),
            "preprocessor": self.preprocessor_.get_state(),
            "train_fingerprint": self.fingerprint_,
            "fit_summary": self.fit_summary_,
        }
        log_root = getattr(self, "_log_root", None)
        tb = getattr(self, "_tensorboard_dir", None)
        if tb is None and log_root is not None:
            tb = Path(log_root.name) / TB_DIR
        return write_model_dir(
            path,
            meta=meta,
            state_dict=self.model_.state_dict(),
            metrics=self.metrics_,
            tensorboard=tb,
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> FusionPredictor:
        """Load a model directory written by :meth:`save` (never unpickles anything)."""
        from crossfuse.versions import current_version, resolve_model_dir

        folder = resolve_model_dir(path)  # the live version's folder, read once
        meta, state, metrics = read_model_dir(folder)
        config = from_dict(CrossfuseConfig, meta["config"])
        predictor = cls(label=meta["label"], config=config, device=device, progress=False)
        pre = Preprocessor.from_state(meta["preprocessor"])
        model = build_model(input_specs(pre), task_specs(pre), config.model)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelDirError(f"weights in {path} do not match its config: {e}") from None
        predictor.config_, predictor.schema_ = config, Schema.from_dict(meta["schema"])
        predictor.preprocessor_ = pre
        predictor.model_ = model.to(resolve_device(predictor.device)).eval()
        predictor.metrics_, predictor.fit_summary_ = metrics, meta.get("fit_summary", {})
        predictor.fingerprint_ = str(meta.get("train_fingerprint", ""))
        predictor.version_ = str(current_version(folder))
        return predictor


def _check_run_data(run_dir: Path, train_fingerprint: str, resume: bool) -> None:
    """Record the training table's fingerprint in a run directory; on resume, refuse a
    table that changed since the run started (the checkpoint would not fit it)."""
    import json

    from crossfuse.atomic import atomic_write

    path = run_dir / "train_fingerprint.json"
    if resume and path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8")).get("train")
        if recorded != train_fingerprint:
            raise CrossfuseError(
                f"the training table changed since the run in {run_dir} started; "
                "resume with the same table, or start a new run"
            )
    if not resume:
        atomic_write(path, json.dumps({"train": train_fingerprint}))
