"""Early stopping: a candidate's scoring stops once it is clearly past the allowed drop (or, when
asked, clearly within it), and a candidate that is not stopped scores exactly as in one go."""

from __future__ import annotations

import numpy as np
import pytest

from simq.eval import BEYOND, WITHIN, AccuracyEvaluator, AgreementEvaluator, EarlyStopping, paired_drop

N, CLASSES, WIDTH = 1000, 3, 12


@pytest.fixture(scope="module")
def data():
    """Token inputs right-padded to various lengths, and labels a reference model gets 80 % right."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, WIDTH + 1, N)
    mask = (np.arange(WIDTH)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, 50, (N, WIDTH)) * mask
    labels = ids[:, 0] % CLASSES
    wrong = rng.random(N) < 0.2
    labels[wrong] = (labels[wrong] + 1) % CLASSES
    return {"input_ids": ids, "attention_mask": mask}, labels


def model(noise: float, seed: int = 1):
    """A classifier reading the first token (plus, per example, a fixed random flip with
    probability `noise`); like a dynamically quantized model, its batches' padding is cut."""
    flips = np.random.default_rng(seed).random(200) < noise

    def run(feed):
        ids = feed["input_ids"]
        assert ids.shape[1] == feed["attention_mask"].sum(1).max()  # cut to its longest
        answer = (ids[:, 0] + flips[ids[:, 0] + ids[:, 1]]) % CLASSES
        return [np.eye(CLASSES)[answer] + 0.01 * ids[:, :1]]

    return run


def test_a_model_not_rejected_scores_exactly_as_in_one_go(data):
    inputs, labels = data
    evaluator = AccuracyEvaluator(inputs, labels, batch_size=64, mask="attention_mask")
    reference = evaluator.score(model(0.0))
    rejection = EarlyStopping(reference.per_example, allowed=1.0)
    for run in (model(0.0), model(0.02)):
        full, early = evaluator.score(run), evaluator.score_early(run, None, rejection)
        assert early.scored is None and early.value == full.value
        np.testing.assert_array_equal(early.per_example, full.per_example)


def test_a_model_far_past_the_limit_stops_at_the_first_look(data):
    inputs, labels = data
    evaluator = AccuracyEvaluator(inputs, labels, batch_size=64, mask="attention_mask")
    reference = evaluator.score(model(0.0))
    broken = evaluator.score_early(model(0.5), None, EarlyStopping(reference.per_example, allowed=1.0))
    batches = -(-N // 64)
    assert broken.scored is not None and broken.scored <= 64 * -(-batches // 4) and broken.settled == BEYOND
    scored = np.isfinite(broken.per_example)
    assert scored.sum() == broken.scored and broken.value == pytest.approx(broken.per_example[scored].mean())
    drop = paired_drop(reference.per_example, broken.per_example)  # paired on what both scored
    assert drop.examples == broken.scored and drop.low > 1.0
    # under a limit it keeps, the same model is scored in full
    kept = EarlyStopping(reference.per_example, allowed=paired_drop(reference.per_example, evaluator.score(model(0.5)).per_example).high)
    assert evaluator.score_early(model(0.5), None, kept).scored is None


def test_a_model_far_inside_the_limit_stops_only_when_acceptance_is_asked_for(data):
    """The reference's own twin is inside any limit at the first look; a model as far past the
    limit as it is inside another is never accepted."""
    inputs, labels = data
    evaluator = AccuracyEvaluator(inputs, labels, batch_size=64, mask="attention_mask")
    reference = evaluator.score(model(0.0))
    twin = evaluator.score_early(model(0.0), None, EarlyStopping(reference.per_example, allowed=1.0, accept=True))
    batches = -(-N // 64)
    assert twin.settled == WITHIN and twin.scored <= 64 * -(-batches // 4) and twin.value == pytest.approx(np.nanmean(twin.per_example))
    assert evaluator.score_early(model(0.0), None, EarlyStopping(reference.per_example, allowed=1.0)).scored is None
    only_accepting = EarlyStopping(reference.per_example, allowed=1.0, reject=False, accept=True)
    assert evaluator.score_early(model(0.5), None, only_accepting).scored is None


def test_agreement_stops_early_too_and_every_candidate_sees_the_same_examples(data):
    inputs, _ = data
    reference_logits = np.concatenate([model(0.0)(_cut(inputs, i))[0] for i in range(N)])
    evaluator = AgreementEvaluator(reference_logits, inputs, 64, "attention_mask")
    rejection = EarlyStopping(np.full(N, 100.0, np.float32), allowed=1.0)
    first, second = (evaluator.score_early(model(0.5, seed), None, rejection) for seed in (1, 2))
    assert first.scored == second.scored
    np.testing.assert_array_equal(np.isfinite(first.per_example), np.isfinite(second.per_example))


def _cut(inputs, i):
    length = int(inputs["attention_mask"][i].sum())
    return {k: v[i : i + 1, :length] for k, v in inputs.items()}
