"""`tune`: elastic fine-tuning, so that every sub-network `simq compile` can pick keeps its accuracy.

One fine-tuning run turns the model into a weight-sharing super-network (InstaTune): heads and
FFN neurons are sorted by importance first, so every width is a first-k slice; each step trains
the largest network on the labels and, by in-place distillation from its logits (and optionally
from each layer's output, DynaBERT-style), the smallest and a few random sub-networks of the space
the search explores (the sandwich rule), with layers dropped at random so that any depth choice is
trained too.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.data import Examples
from simq.errors import DataError, InvalidArgumentError, OutputError
from simq.ir import TorchSource, analyze, cleanup, resolve_signature, save
from simq.passes.prune import ELASTIC_METADATA
from simq.tune._batches import accuracy, batches_of, feed_of
from simq.tune._elastic import ElasticNetwork

__all__ = ["TuneOptions", "TuneResult", "elastic_network", "embedding_tables", "lr_factor", "sandwich_step", "tune"]

CHECKPOINT = "checkpoint.pt"
Progress = Callable[[str, int, int, Mapping[str, float]], None]


@dataclass(frozen=True)
class TuneOptions:
    """How to tune.

    Attributes:
        epochs: Passes over the train split. 6 by default: against 3 (docs/EPOCHS.md), every
            INT8 sub-network of the grid gained 1.5 to 6 points on validation, test and unseen
            rows, the smallest the most, at twice the time.
        batch_size, lr, weight_decay, warmup: AdamW with linear warm-up (this share of the steps)
            and linear decay to zero (see `lr_factor`).
        accumulation: Batches per optimizer step.
        random_subnets: Random sub-networks per step, besides the largest and the smallest.
        min_width: The smallest sub-network keeps this share of every layer's heads and neurons;
            random ones are drawn between it and the full width.
        min_depth: The smallest sub-network keeps this share of the layers (the least important
            middle layers go first, by how much each changes the residual stream); random ones
            drop as many or fewer, in the same order.
        layer_drop: Probability that a random sub-network is shallower than the full network.
        distil_hidden: Weight of hidden-state distillation: besides the logits, every layer a
            sub-network keeps is pulled toward the largest network's output of that layer
            (relative squared error, padding left out). 0 distils the logits only. 1 by default:
            the 6-epoch default was measured with it (docs/EPOCHS.md), and over two seeds of 3
            epochs (docs/DISTIL.md) it raised the 3-layer sub-networks, the fastest a tuned
            compile publishes, by about a point, at no extra time.
        train_embeddings: Also train the embedding tables (token, position, type). On by default:
            frozen (docs/EMBEDDINGS.md), a step took 0.90x the time and the run 0.91x on
            minilm-tweets, and the smallest sub-networks ended 0.6 to 1.25 points lower on
            validation, test and unseen rows. Worth it where the tables dominate the parameters
            (a large multilingual vocabulary), not for a 30k-token MiniLM.
        time_limit: Seconds for the whole run from its first step, validations included (a
            resumed run counts what its checkpoint had spent). From the time a step and a
            validation take, training plans the steps that fit with a validation after each epoch
            and at its end, and stops after them. The learning rate keeps the epochs' schedule:
            ending a cut-short run annealed was measured and lost accuracy (docs/TIME_LIMIT.md).
        validation_sample: Validation rows scored after every epoch but the last (a fixed random
            sample; the run's last validation scores the whole split; 0: the whole split every
            time). Validating the largest and smallest networks on minilm-tweets' 4,500 tweets
            takes about 75 s on 2 cores, six times in a 6-epoch run; 1,000 rows take a fifth of
            that and still show the curve to about ±3 points (95 %).
        threads: Torch threads.
        seed: Seeds order, sub-networks and initialisation; a run is repeatable.
    """

    epochs: int = 6
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    accumulation: int = 1
    random_subnets: int = 2
    min_width: float = 0.25
    min_depth: float = 0.5
    layer_drop: float = 0.5
    distil_hidden: float = 1.0
    train_embeddings: bool = True
    time_limit: float | None = None
    validation_sample: int = 1000
    threads: int = 2
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.accumulation < 1 or self.threads < 1:
            raise InvalidArgumentError("--epochs, --batch-size, --accumulation and --threads must be at least 1.")
        if self.validation_sample < 0:
            raise InvalidArgumentError("--validation-sample is a number of rows, at least 0 (0: the whole split).")
        if not 0 < self.min_width <= 1:
            raise InvalidArgumentError("--min-width is a share of the full width, in (0, 1].")
        if not 0 < self.min_depth <= 1:
            raise InvalidArgumentError("--min-depth is a share of the layers, in (0, 1].")
        if not 0 <= self.layer_drop < 1:
            raise InvalidArgumentError("--layer-drop is a probability, in [0, 1).")
        if self.distil_hidden < 0:
            raise InvalidArgumentError("--distil-hidden is a loss weight, at least 0.")
        if self.lr <= 0 or self.time_limit is not None and self.time_limit <= 0:
            raise InvalidArgumentError("--lr and --time-limit must be positive.")


@dataclass
class TuneResult:
    out: Path
    onnx: Path
    epochs_done: int
    stopped_early: str | None
    curves: list[dict[str, float]] = field(default_factory=list)
    #: "sliced" or "masked": how the sub-networks ran (see `ElasticNetwork.use_slices`).
    sub_networks: str = "sliced"


def _check_disjoint(examples: Examples) -> tuple[dict[str, Any], list[str]]:
    """Train rows must be none of the rows anything is calibrated or scored on (by content: text,
    image or array bytes as given). Returns the record and the train rows' hashes."""
    train = examples.row_hashes("train")
    record: dict[str, Any] = {"train": len(train)}
    for role in ("calibration", "validation", "test"):
        shared = set(train) & set(examples.row_hashes(role))
        if shared:
            raise DataError(f"{len(shared)} training examples are also in the {role} split; tuning on them would inflate every score. Deduplicate the data.")
        record[role] = "disjoint"
    return record, train


def tune(
    source: TorchSource,
    examples: Examples,
    out: Path,
    options: TuneOptions = TuneOptions(),
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> TuneResult:
    """Fine-tune `source` elastically on the train split of `examples` and write the result to `out`.

    `out` then holds ``model/`` (the tuned model in its native form), ``model.onnx`` (its export,
    marked elastic: `simq compile` searches it in first-k order and judges accuracy against
    ``original.onnx``, the model as given), ``tune.json`` (settings, data hashes, curves) and
    ``checkpoint.pt`` (the last finished epoch; ``resume`` continues from it).

    Raises:
        DataError: No labels, no train split, or train rows that also appear in another split.
        InvalidArgumentError: Bad options, or `out` holds another run (without `resume`).
    """
    import torch

    options.check()
    progress = progress or (lambda *_: None)
    if not examples.labelled:
        raise DataError("tuning needs labels; give --data with a label column.")
    if examples.synthetic:
        raise DataError("tuning needs real data; give --data (synthetic inputs have no labels).")
    out = Path(out)
    checkpoint = out / CHECKPOINT
    if out.exists() and any(out.iterdir()) and not resume:
        raise InvalidArgumentError(f"{out} is not empty; pass --resume to continue the run in it or choose another --out.")
    if resume and not checkpoint.is_file():
        raise InvalidArgumentError(f"{out} holds no tuning checkpoint to resume; drop --resume to start one.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror or e}.") from None
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    train, validation, calibration = examples.role("train"), examples.role("validation"), examples.role("calibration")
    data_record, train_rows = _check_disjoint(examples)

    # The model's ONNX export gives the layers, heads and widths the search will prune.
    progress("analysing", 0, 1, {})
    example, original, elastic = elastic_network(source, calibration)
    if not resume:
        save(original, out / "original.onnx")
    source.module.train()
    rng = np.random.default_rng(options.seed)
    state: dict[str, Any] = {"epoch": 0, "curves": [], "orders": None}
    if resume:
        saved = torch.load(checkpoint, weights_only=False)
        source.module.load_state_dict(saved["model"])
        state = saved["state"]
        elastic.depth_order = list(state["orders"]["depth"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
    else:
        source.module.eval()
        state["orders"] = elastic.reorder(
            ({k: torch.from_numpy(v) for k, v in batch.items()} for batch, _ in calibration.batches(16)), source.logits
        )
    state["sub_networks"] = "sliced" if elastic.use_slices(feed_of(calibration, np.arange(min(16, len(calibration))), torch), source.logits) else "masked"
    steps_per_epoch = math.ceil(math.ceil(len(train) / options.batch_size) / options.accumulation)
    total = steps_per_epoch * options.epochs
    if not options.train_embeddings:
        for table in embedding_tables(source.module, torch):
            table.requires_grad_(False)
    trained = [p for p in source.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=options.lr, weight_decay=options.weight_decay)
    smallest = elastic.smallest(options.min_width, options.min_depth)
    sample = _validation_sample(len(validation), options)
    budget = _TimeBudget(options.time_limit, steps_per_epoch, options.epochs, options.accumulation, state, len(sample) / len(validation))
    if options.time_limit and not budget.validation:  # before any validation, an estimate timed on a sample
        budget.validation = _validation_estimate(source, elastic, [elastic.largest(), smallest], validation, torch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, options.warmup))
    if resume:
        try:
            optimizer.load_state_dict(saved["optimizer"])
        except ValueError:  # another set of trained parameters
            raise InvalidArgumentError(f"the run in {out} trained {'no' if options.train_embeddings else 'its'} embedding tables; resume it with the same --train-embeddings choice.") from None
        schedule.load_state_dict(saved["schedule"])
        stopped_at = state.get("stopped_at_limit")  # the limit a run stopped at must grow to continue it
        out_of_time = stopped_at is not None and options.time_limit is not None and options.time_limit <= stopped_at
        if state["epoch"] < options.epochs and (out_of_time or budget.spent(schedule.last_epoch)):
            raise InvalidArgumentError(f"the run in {out} has no time left for a step within its {options.time_limit / 60:g} minutes; give a larger --time-limit to continue it.")
    labels = torch.from_numpy(train.labels)
    stopped = None
    for epoch in range(state["epoch"], options.epochs):
        source.module.train()
        batches = batches_of(train, options.batch_size, rng)
        losses = []
        for i, rows in enumerate(batches):
            stepping = time.monotonic()
            feed = feed_of(train, rows, torch)
            configs = [elastic.largest(), smallest] + [
                elastic.sample(rng, options.min_width, options.layer_drop, options.min_depth) for _ in range(options.random_subnets)
            ]
            losses.append(sandwich_step(source, elastic, feed, labels[rows], configs, options, torch))
            if (i + 1) % options.accumulation == 0 or i + 1 == len(batches):
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            progress("training", epoch * len(batches) + i + 1, options.epochs * len(batches), {"epoch": epoch + 1, "loss": float(np.mean(losses[-20:]))})
            budget.stepped(time.monotonic() - stepping)
            if budget.spent(schedule.last_epoch) and not (epoch + 1 == options.epochs and i + 1 == len(batches)):
                stopped = "time limit"  # steps were left (the run's last step ends it as planned)
                break
        source.module.eval()
        if not stopped and epoch + 1 < options.epochs and budget.spent(schedule.last_epoch):
            stopped = "time limit"  # no room for another step and the validations after it
        rows = None if stopped or epoch + 1 == options.epochs else sample  # the run's last scores all
        validating = time.monotonic()
        curve = {
            "epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"],
            "validation_largest": accuracy(source, elastic, elastic.largest(), validation, torch, rows=rows),
            "validation_smallest": accuracy(source, elastic, smallest, validation, torch, rows=rows),
            "validation_rows": len(validation) if rows is None else len(rows),
        }  # fmt: skip
        seconds = time.monotonic() - validating
        budget.validation = state["validation_seconds"] = seconds if rows is None else seconds / budget.share
        budget.validated = epoch + 1
        state["curves"].append(curve)
        state["epoch"], state["seconds"], state["step_seconds"] = epoch + 1, budget.seconds(), budget.step_seconds
        progress("validated", epoch + 1, options.epochs, curve)
        if not stopped and epoch + 1 < options.epochs and budget.spent(schedule.last_epoch):
            stopped = "time limit"  # the validation took longer than planned: its sample's score ends the run
        state["stopped_at_limit"] = options.time_limit if stopped else None
        _save_checkpoint(checkpoint, source, optimizer, schedule, state, rng, torch)
        if stopped:
            break
    elastic.set({})
    elastic.record_hidden(False)
    elastic.close()
    source.module.eval()
    return _write(source, original, out, options, state, data_record | {"train_rows": train_rows}, stopped, example, elastic.max_drops(options.min_depth))


def elastic_network(source: TorchSource, calibration) -> tuple[dict[str, np.ndarray], ir.Model, ElasticNetwork]:
    """`source` made elastic along what SimQ's analysis finds in its ONNX export (exported on two
    `calibration` rows). Returns those rows' inputs, the export and the elastic network.

    Raises:
        InvalidArgumentError: The export has no transformer layers to make elastic.
    """
    example = {k: np.asarray(v[:2]) for k, v in calibration.inputs.items()}
    original = cleanup(source.export(example))
    structure = analyze(original, resolve_signature(original, {k: (1, *v.shape[1:]) for k, v in example.items()}))
    if not structure.layers:
        raise InvalidArgumentError(f"{source.name} has no transformer layers SimQ can make elastic (heads, FFN, depth).")
    return example, original, ElasticNetwork(source.module, original, structure)


def embedding_tables(module: Any, torch) -> list[Any]:
    """The weights of `module`'s embedding tables (what ``train_embeddings`` decides on)."""
    return [m.weight for m in module.modules() if isinstance(m, torch.nn.Embedding)]


class _TimeBudget:
    """How many optimizer steps fit in a time limit (seconds for the whole run, from its first step)
    when every epoch ends with a validation (on a sample, the run's last on the whole split) and so
    does a run the limit cuts short: planned from the seconds a step and a validation take, again
    at every step."""

    def __init__(
        self, limit: float | None, steps_per_epoch: int, epochs: int, accumulation: int = 1, state: Mapping[str, Any] | None = None, share: float = 1.0
    ) -> None:
        """`state`: a checkpoint's (``epoch``, ``seconds``, ``step_seconds`` and
        ``validation_seconds``), to resume its budget. `share`: of the validation split that the
        validations before the last one score."""
        state = state or {}
        self.limit, self.steps_per_epoch, self.epochs, self.accumulation, self.share = limit, steps_per_epoch, epochs, accumulation, share
        self.validated = state.get("epoch", 0)  # epochs validated so far
        self.validation = state.get("validation_seconds", 0.0)  # seconds a validation of the whole split takes (0: not known yet)
        self._start, self._before = time.monotonic(), state.get("seconds", 0.0)
        self._step_seconds, self._steps = state.get("step_seconds", (0.0, 0))
        self._recent = self._step_seconds / self._steps if self._steps else 0.0  # moving average of a batch's seconds

    @property
    def step_seconds(self) -> tuple[float, int]:
        """Seconds the timed batches took, and how many there were."""
        return self._step_seconds, self._steps

    def seconds(self) -> float:
        """Since the run's first step, resumed parts included."""
        return self._before + time.monotonic() - self._start

    def stepped(self, seconds: float) -> None:
        """One batch took `seconds` (all it took: loading, training, reporting)."""
        self._step_seconds += seconds
        self._steps += 1
        self._recent = seconds if self._steps == 1 else 0.8 * self._recent + 0.2 * seconds

    def planned(self, done: int) -> float:
        """Optimizer steps of the whole run that fit, `done` of them taken (infinite without a
        limit or before three steps have been timed)."""
        if not self.limit or self._steps < 3:
            return math.inf
        # A step costs the larger of its run-long and recent average (a machine that gets busier
        # must not overrun the plan), and one step is kept in hand.
        per_step = self.accumulation * max(self._step_seconds / self._steps, self._recent)
        left = self.limit - self.seconds() - per_step
        best = float(done)  # nothing more fits: stop now
        for last in range(self.validated + 1, self.epochs + 1):  # the run ends in epoch `last`,
            validations = last - self.validated  # validated at the end of it and of each before it
            validating = ((validations - 1) * self.share + 1) * self.validation  # the last on the whole split
            fits = min(last * self.steps_per_epoch, done + (left - validating) / per_step)
            if fits > (last - 1) * self.steps_per_epoch:
                best = max(best, fits)
        return best

    def spent(self, done: int) -> bool:
        """No further step fits (or the time is up)."""
        return bool(self.limit) and (self.seconds() >= self.limit or done >= self.planned(done))


def _validation_sample(rows: int, options: TuneOptions) -> np.ndarray:
    """The validation rows scored after every epoch but the last: a fixed random sample."""
    if not options.validation_sample or options.validation_sample >= rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(options.seed).choice(rows, size=options.validation_sample, replace=False))


def _validation_estimate(source: TorchSource, elastic: ElasticNetwork, configs, data, torch, sample: int = 128) -> float:
    """Seconds one validation of `configs` on `data` will take, timed on a random sample."""
    rows = np.random.default_rng(0).choice(len(data), size=min(sample, len(data)), replace=False)
    source.module.eval()
    accuracy(source, elastic, configs[0], data, torch, size=16, rows=rows[:16])  # the first calls run slow
    start = time.monotonic()
    for config in configs:
        accuracy(source, elastic, config, data, torch, size=16, rows=rows)
    return (time.monotonic() - start) * len(data) / len(rows)


def sandwich_step(source: TorchSource, elastic: ElasticNetwork, feed: Mapping[str, Any], labels: Any, configs, options: TuneOptions, torch) -> float:
    """Accumulate one batch's gradients: the first of `configs` (the largest network) on the
    labels, each other sub-network distilled from its logits (and, with `distil_hidden`, its kept
    layers' outputs). Returns the mean loss."""
    teacher = teacher_hidden = None
    total = 0.0
    for j, config in enumerate(configs):
        elastic.set(config)
        elastic.record_hidden(options.distil_hidden > 0)
        logits = source.logits(feed)
        if j == 0:
            loss = torch.nn.functional.cross_entropy(logits, labels)
            teacher = logits.detach()
            teacher_hidden = {i: h.detach() for i, h in (elastic.hidden or {}).items()}
        else:  # in-place distillation from the largest network's logits (and layer outputs)
            loss = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), torch.log_softmax(teacher, -1), log_target=True, reduction="batchmean")
            if teacher_hidden:
                loss = loss + options.distil_hidden * hidden_loss(elastic.hidden, teacher_hidden, feed.get("attention_mask"), torch)
        (loss / (len(configs) * options.accumulation)).backward()
        total += loss.item()
    return total / len(configs)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """The learning-rate multiplier after `step` of `total` optimizer steps: linear warm-up over
    the first `warmup` share of the steps, then linear decay to zero at the last."""
    done = step / total
    rise = (done + 1 / total) / max(warmup, 1 / total)
    fall = (1 - done) / max(1 - warmup, 1 / total)
    return max(0.0, min(rise, fall, 1.0))


def hidden_loss(student: Mapping[int, Any], teacher: Mapping[int, Any], mask: Any, torch) -> Any:
    """Mean over the layers `student` kept of the relative squared error of its output against
    `teacher`'s output of the same layer; tokens where `mask` (batch, tokens) is 0 left out."""
    losses = []
    for index, out in student.items():
        target = teacher[index]
        error, norm = (out - target).pow(2).sum(-1), target.pow(2).sum(-1)
        if mask is not None and tuple(mask.shape) == tuple(error.shape):
            error, norm = error * mask, norm * mask
        losses.append(error.sum() / norm.sum().clamp(min=1e-6))
    return torch.stack(losses).mean()


def _save_checkpoint(path: Path, source: TorchSource, optimizer, schedule, state, rng, torch) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {"model": source.module.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
         "state": state, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
        partial,
    )  # fmt: skip
    partial.replace(path)


def _write(source: TorchSource, original, out: Path, options: TuneOptions, state, data_record, stopped, example, max_drops: int) -> TuneResult:
    folder = out / "model"
    partial = out / "model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    source.save(source.module, partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    exported = cleanup(source.export(example))
    exported.metadata_props[ELASTIC_METADATA] = json.dumps({
        "order": "first", "original": "original.onnx", "source": source.name, "min_width": options.min_width,
        "depth_order": state["orders"]["depth"], "max_drops": max_drops,
    })  # fmt: skip
    onnx_path = save(exported, out / "model.onnx")
    record = {
        "source": source.name, "options": asdict(options), "epochs_done": state["epoch"], "stopped_early": stopped,
        "data": data_record, "curves": state["curves"], "orders": state["orders"], "seconds": state.get("seconds"),
        "sub_networks": state["sub_networks"],
    }  # fmt: skip
    (out / "tune.json.partial").write_text(json.dumps(record, indent=1))
    (out / "tune.json.partial").replace(out / "tune.json")
    return TuneResult(out, onnx_path, state["epoch"], stopped, state["curves"], state["sub_networks"])
