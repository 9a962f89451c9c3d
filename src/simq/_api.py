"""SimQ from Python: `compile` and `tune`, the same work as ``simq compile`` and ``simq tune``.

`data` is what users hold: a path (a CSV/TSV, JSON Lines or Parquet file, a folder of split files,
a saved dataset, an image folder, an ``.npz``), a `datasets.Dataset` or ``DatasetDict``, a pandas
``DataFrame``, a mapping of columns (``{"text": [...], "label": [...]}``) or a ``(texts, labels)``
pair. In-memory data is saved once under the output folder (``OUT/data``) and read from there,
through the same path as files. Units are the command line's: points of the score, minutes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simq.errors import DataError, InvalidArgumentError

__all__ = ["CompileRun", "compile", "tune"]

DataLike = Any  # str | Path | datasets.Dataset | datasets.DatasetDict | pandas.DataFrame | Mapping | tuple


@dataclass(frozen=True)
class CompileRun:
    """What `compile` gives back.

    Attributes:
        out: The output folder (``pareto/``, ``pareto.csv``, ``report.html``, ``summary.json``).
        models: The published models, fastest first (`simq.search.Published`: ``load()``,
            ``save_pretrained(dir)``, ``metrics``).
        headline: The run's verdict against the strongest baseline within the accuracy limit.
        result: Everything else (`simq.search.CompileResult`: records, baselines, the summary).
    """

    out: Path
    models: list[Any]
    headline: str | None
    result: Any

    def best(self, max_drop: float | None = None) -> Any:
        """The fastest published model whose accuracy drop on test is at most `max_drop` points
        (paired estimate), or the fastest of all without a limit.

        Raises:
            InvalidArgumentError: No published model is within `max_drop`.
        """
        for model in self.models:  # fastest first
            drop = model.metrics.get("accuracy_drop")
            if max_drop is None or drop is None or drop <= max_drop:
                return model
        raise InvalidArgumentError(f"no published model is within {max_drop:g} points on the test split; allow a larger drop.")


def _data_path(data: DataLike, out: Path, text_column: str | None, label_column: str | None) -> Path:
    """A path `simq.data` reads: `data` itself when it is one, else `data` saved under ``out/data``."""
    if isinstance(data, (str, os.PathLike)):
        return Path(data)
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - a core dependency
        raise DataError("in-memory data needs the datasets library.") from e
    text, label = text_column or "text", label_column or "label"
    if isinstance(data, tuple) and len(data) == 2:
        data = {text: list(data[0]), label: list(data[1])}
    if isinstance(data, Mapping) and not isinstance(data, datasets.DatasetDict):
        if not data or not all(isinstance(v, Sequence) or hasattr(v, "__len__") for v in data.values()):
            raise DataError("give data as columns of equal length, e.g. {'text': [...], 'label': [...]}.")
        data = datasets.Dataset.from_dict({k: list(v) for k, v in data.items()})
    elif type(data).__name__ == "DataFrame":
        data = datasets.Dataset.from_pandas(data, preserve_index=False)
    if not isinstance(data, (datasets.Dataset, datasets.DatasetDict)):
        raise DataError(f"cannot read data of type {type(data).__name__}; give a path, a datasets Dataset, a DataFrame, columns or (texts, labels).")
    folder = out / "data"
    partial = out / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    data.save_to_disk(str(partial))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def compile(  # noqa: A001 - the verb users know from the command line
    model: str | os.PathLike[str],
    data: DataLike | None = None,
    *,
    target: str = "ort-cpu",
    out: str | os.PathLike[str] = "simq-out",
    budget: int = 40,
    max_accuracy_drop: float | None = 1.0,
    confidence: float | None = None,
    objectives: Sequence[str] = ("accuracy", "latency", "size"),
    time_limit: float | None = None,
    final_time_limit: float | None = 5.0,
    seed: int = 0,
    resume: bool = False,
    threads: int = 2,
    batch_size: int | None = None,
    seq_len: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    evaluator: str | None = None,
    baselines: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[..., None] | None = None,
    **options: Any,
) -> CompileRun:
    """Search pruning and quantization jointly for `target` and publish the Pareto-optimal models.

    Args:
        model: An .onnx file, a transformers folder, a Hugging Face id in the local cache, a
            `simq tune` output folder, or ``zoo:NAME``.
        data: See the module docstring; None uses a zoo model's own splits, or synthetic inputs.
        max_accuracy_drop: Points below the reference (None: no limit), judged paired at
            `confidence` on the validation split (default: 0.9; 0.8 when the split holds at
            least 1,024 examples, 0.7 from 2,048; docs/ACCEPTANCE.md).
        time_limit: Minutes after which no new candidate starts.
        final_time_limit: Minutes the final pass may spend timing the published models once
            each has its minimum rounds (None: until every interval is within its tolerance).
        baselines: Build and measure the target's off-the-shelf baselines beside the search.
        options: Further `simq.search.CompileOptions` fields (``algorithm``, ``population``,
            ``final_models``, ``keep_slower``, ``latency``, ...).

    Raises:
        SimqError: Bad input of any kind, as one sentence.
    """
    from simq.data import DataOptions
    from simq.ir import zoo_model_of
    from simq.search import CompileOptions, JobSpec, check_out, compile_model, load_published, make_out, prepare_job

    out = Path(out)
    known = set(CompileOptions.__dataclass_fields__) - {"objective_table"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(f"unknown option {unknown[0]!r}; compile takes {', '.join(sorted(known))}.")
    compile_options = CompileOptions(
        objectives=tuple(objectives), budget=budget, max_accuracy_drop=max_accuracy_drop, seed=seed,
        confidence=confidence,
        time_limit=time_limit * 60 if time_limit is not None else None,
        final_time_limit=final_time_limit * 60 if final_time_limit is not None else None, **options,
    )  # fmt: skip
    compile_options.check()
    check_out(out, resume)
    data_options = None
    if data is not None:
        path = _data_path(data, out, text_column, label_column)
        data_options = DataOptions(path, text_column=text_column, label_column=label_column, tokenizer=Path(tokenizer) if tokenizer else None, seed=seed)
    spec = JobSpec(
        model=str(model), target=target, threads=threads, data=data_options, batch_size=batch_size, seq_len=seq_len,
        evaluator=evaluator, baselines=baselines, cache_dir=Path(cache_dir) if cache_dir else None, seed=seed,
        cost_model=out / "costmodel" if compile_options.latency == "predicted" else None,
    )  # fmt: skip
    zoo = None
    if zoo_model_of(str(model)) is not None:
        from simq.zoo import Zoo

        zoo = Zoo(cache_dir)
    job = prepare_job(spec, zoo).job
    make_out(out)
    result = compile_model(job, compile_options, out, resume=resume, progress=progress)
    return CompileRun(out, load_published(out, result.summary), result.summary.get("headline"), result)


def tune(
    model: str | os.PathLike[str],
    data: DataLike | None = None,
    *,
    out: str | os.PathLike[str] = "simq-tuned",
    resume: bool = False,
    text_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[..., None] | None = None,
    **options: Any,
) -> Any:
    """Fine-tune `model` elastically on the train split of `data`, so that the sub-networks
    `compile` picks keep their accuracy; `compile(result.out, ...)` then searches what was trained.

    Args:
        model: A transformers sequence- or image-classification folder, or ``zoo:minilm-tweets``.
        options: `simq.tune.TuneOptions` fields (``epochs``, ``min_width``, ``time_limit`` in
            minutes, ...).

    Returns:
        `simq.tune.TuneResult`.
    """
    from simq.data import DataOptions
    from simq.ir import load, resolve_source, transformers_source, zoo_name
    from simq.search import JobSpec, examples_for
    from simq.tune import TuneOptions
    from simq.tune import tune as run_tune

    out = Path(out)
    known = set(TuneOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(f"unknown option {unknown[0]!r}; tune takes {', '.join(sorted(known))}.")
    if options.get("time_limit") is not None:
        options["time_limit"] = options["time_limit"] * 60
    tune_options = TuneOptions(**options)
    tune_options.check()
    data_options = None
    if data is not None:
        data_options = DataOptions(_data_path(data, out.with_name(out.name + "-data"), text_column, label_column), text_column=text_column, label_column=label_column, seed=tune_options.seed)
    name = zoo_name(str(model))
    zoo = None
    if name is not None:
        from simq.zoo import Zoo

        zoo = Zoo(cache_dir)
        source, path, folder = zoo.torch_source(name), zoo.path(name), None
    else:
        path = resolve_source(str(model))
        if not path.is_dir():
            raise InvalidArgumentError(f"{model}: tune needs the PyTorch model (a transformers folder or zoo:minilm-tweets), not an .onnx file.")
        source, folder = transformers_source(path), path
    if data_options is None and zoo is None:
        raise InvalidArgumentError("give data with labels: tuning trains on its train split.")
    onnx_model = load(path, cache_dir=Path(cache_dir) if cache_dir else None)
    spec = JobSpec(model=str(model), data=data_options, cache_dir=Path(cache_dir) if cache_dir else None, seed=tune_options.seed)
    examples, _, _ = examples_for(spec, onnx_model, folder, zoo)
    return run_tune(source, examples, out, tune_options, resume=resume, progress=progress)
