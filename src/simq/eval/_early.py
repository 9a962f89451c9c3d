"""Early stopping: stop scoring a candidate once it is clearly beyond the allowed drop, or
clearly within it.

Scoring is most of what a candidate costs (minilm-tweets: 23 of 25 seconds for 4,500 validation
tweets). A candidate whose first quarter of the split already puts it far past the limit will
not be published, and the search only needs to know it is bad: its scoring stops there
(rejection). One that is far inside the limit (a tuned sub-network several points above the
original) is published if it is on the front whatever the rest of the split says: its scoring
stops too (acceptance), and its accuracy is that of what was scored, with the wider interval
that goes with it. Candidates near the limit, which decide what is published as the fastest
within it, are scored in full. The examples are taken in random whole batches (the batches full
scoring runs), so a candidate that is not stopped scores exactly as it would have in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simq.eval._paired import paired_drop

__all__ = ["BEYOND", "EarlyStopping", "WITHIN"]

#: `EarlyStopping.settled`'s verdicts: past the allowed drop, or inside it, at its confidence.
BEYOND, WITHIN = "beyond", "within"


@dataclass(frozen=True)
class EarlyStopping:
    """When a candidate's scoring stops: at each look (a share of the split's batches), if the
    paired drop's one-sided *lower* bound at `confidence` is past `allowed` (with `reject`), or
    its *upper* bound at `confidence` is within it (with `accept`).

    Two looks at 0.995 each wrongly reject a candidate that is within the limit, or accept one
    that is past it, at most 1 % of the time (treating the examples of the sampled batches as
    independent; batches group examples of similar length); a stopped candidate keeps the
    accuracy of what was scored (well past or well inside the limit), which is what the search
    ranks it by. docs/EARLY.md: what each saves.

    Attributes:
        reference: The accuracy reference's per-example scores on the split (what drops are
            measured from).
        allowed: The allowed drop in points (``--max-accuracy-drop``).
        looks: Shares of the batches after which the drop is judged.
        confidence: Of each look's lower bound.
        seed: Of the batches' random order (the same for every candidate, so that they are
            judged on the same examples).
        reject, accept: Which verdicts stop the scoring.
    """

    reference: np.ndarray = field(repr=False, compare=False)
    allowed: float
    looks: tuple[float, ...] = (0.25, 0.5)
    confidence: float = 0.995
    seed: int = 0
    reject: bool = True
    accept: bool = False

    def order(self, batches: int) -> np.ndarray:
        """The batches' indices in the order they are scored."""
        return np.random.default_rng(self.seed).permutation(batches)

    def stops(self, batches: int) -> list[int]:
        """After how many batches the drop is judged; the last is all of them."""
        return sorted({min(batches, max(1, math.ceil(share * batches))) for share in self.looks} | {batches})

    def settled(self, rows: np.ndarray, scores: np.ndarray) -> str | None:
        """`BEYOND` when the candidate, scoring `scores` on the examples `rows`, is past the
        allowed drop even at its lower bound; `WITHIN` when it is inside it even at its upper
        bound; None (go on scoring) otherwise, or for a verdict this stopping does not act on."""
        drop = paired_drop(self.reference[rows], scores, self.confidence)
        if drop.examples < 2:
            return None
        if self.reject and 2 * drop.estimate - drop.bound > self.allowed:
            return BEYOND
        if self.accept and drop.bound <= self.allowed:
            return WITHIN
        return None
