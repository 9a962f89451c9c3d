"""Shared fixtures: one zoo cache per test session, so each tiny model is built once; and small
models and data as a user would bring them (a transformers text classifier folder with its
tokenizer, an image classifier folder with its processor, an ONNX file with a fixed batch of 1, a
ModernBERT folder)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory):
    from simq.zoo import Zoo

    return Zoo(tmp_path_factory.mktemp("zoo-cache"))


WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "day", "film", "was", "very", "not", "a", "movie"]


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier (token_type_ids included) with a WordPiece tokenizer."""
    transformers = pytest.importorskip("transformers")
    import torch

    folder = tmp_path_factory.mktemp("text-model")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=64)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` different labelled sentences (no two alike, so that no example is in two splits)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, str] = {}
    while len(rows) < n:
        positive = bool(rng.integers(2))
        mood = rng.choice(WORDS[:4] if positive else WORDS[4:8])
        filler = " ".join(rng.choice(WORDS[8:], size=int(rng.integers(1, 4))))
        rows.setdefault(f"the film was {mood} {filler}", "pos" if positive else "neg")
    return list(rows.items())


@pytest.fixture(scope="session")
def text_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text-data") / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(sentences(120))
    return path


@pytest.fixture(scope="session")
def image_model(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    folder = tmp_path_factory.mktemp("image-model")
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=2, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """One subfolder per class; images of mixed sizes and modes, as photos come."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir()
        for i in range(20):
            size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
            array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            image = Image.fromarray(array)
            (image.convert("L") if i % 3 == 0 else image).save(root / label / f"{i}.png")
    return root


MLP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 8] x) => (float[1, 3] logits) {
    h = Gemm <transB = 1> (x, w1, b1)
    r = Relu(h)
    logits = Gemm <transB = 1> (r, w2, b2)
}
"""


@pytest.fixture(scope="session")
def fixed_batch_model(tmp_path_factory) -> tuple[Path, Path]:
    """An ONNX MLP exported with a batch of exactly 1, and an .npz of its inputs and labels."""
    folder = tmp_path_factory.mktemp("fixed")
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(MLP)
    for name, shape in (("w1", (32, 8)), ("b1", (32,)), ("w2", (3, 32)), ("b2", (3,))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    onnx.save(proto, folder / "mlp.onnx")
    x = rng.standard_normal((100, 8)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, labels=rng.integers(0, 3, 100))
    return folder / "mlp.onnx", folder / "data.npz"


@pytest.fixture(scope="session")
def make_sentences():
    """`sentences`, for tests that need labelled sentences of their own."""
    return sentences


@pytest.fixture(scope="session")
def modernbert(tmp_path_factory):
    """A small ModernBERT classifier folder (fused Q/K/V, rotary positions, gated FFN; large
    weights, so that every head and neuron matters) and a feed for it."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, local_attention=8,
        num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, initializer_range=0.5,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("modernbert") / "model"
    transformers.ModernBertForSequenceClassification(config).eval().save_pretrained(folder)
    rng = np.random.default_rng(0)
    return folder, {"input_ids": rng.integers(3, 100, (2, 16)), "attention_mask": np.ones((2, 16), np.int64)}
