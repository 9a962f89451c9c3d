"""Early rejection: stop scoring a candidate once it is clearly beyond the allowed drop.

Scoring is most of what a candidate costs (minilm-tweets: 23 of 25 seconds for 4,500 validation
tweets). A candidate whose first quarter of the split already puts it far past the limit will
not be published, and the search only needs to know it is bad: its scoring stops there. The
examples are taken in random whole batches (the batches full scoring runs), so a candidate that
is not rejected scores exactly as it would have in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simq.eval._paired import paired_drop

__all__ = ["EarlyRejection"]


@dataclass(frozen=True)
class EarlyRejection:
    """When a candidate's scoring stops: at each look (a share of the split's batches), if the
    paired drop's one-sided *lower* bound at `confidence` is past `allowed`.

    Two looks at 0.995 each wrongly stop a candidate that is within the limit at most 1 % of
    the time (treating the examples of the sampled batches as independent; batches group
    examples of similar length); a stopped candidate keeps the accuracy of what was scored (well
    past the limit), which is all the search ranks it by. docs/EARLY.md: what it saves.

    Attributes:
        reference: The accuracy reference's per-example scores on the split (what drops are
            measured from).
        allowed: The allowed drop in points (``--max-accuracy-drop``).
        looks: Shares of the batches after which the drop is judged.
        confidence: Of each look's lower bound.
        seed: Of the batches' random order (the same for every candidate, so that they are
            judged on the same examples).
    """

    reference: np.ndarray = field(repr=False, compare=False)
    allowed: float
    looks: tuple[float, ...] = (0.25, 0.5)
    confidence: float = 0.995
    seed: int = 0

    def order(self, batches: int) -> np.ndarray:
        """The batches' indices in the order they are scored."""
        return np.random.default_rng(self.seed).permutation(batches)

    def stops(self, batches: int) -> list[int]:
        """After how many batches the drop is judged; the last is all of them."""
        return sorted({min(batches, max(1, math.ceil(share * batches))) for share in self.looks} | {batches})

    def beyond(self, rows: np.ndarray, scores: np.ndarray) -> bool:
        """Whether the candidate, scoring `scores` on the examples `rows`, is past the allowed
        drop even at its lower bound."""
        drop = paired_drop(self.reference[rows], scores, self.confidence)
        return drop.examples > 1 and 2 * drop.estimate - drop.bound > self.allowed
