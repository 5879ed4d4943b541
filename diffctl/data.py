"""The data set: all 3^9 = 19,683 ternary operations, their indices, the 3-adic geometry and the split.

An operation is a 9-entry truth table with values in {-1, 0, +1}. Index i <-> table: trit j (j = 0 least
significant) is ``((i // 3**j) % 3) - 1``. The whole set is one in-memory tensor; batches are slices of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

N_TRITS = 9
N_OPERATIONS = 3**N_TRITS  # 19,683
_POWERS = torch.tensor([3**j for j in range(N_TRITS)], dtype=torch.long)


def index_to_trits(index: torch.Tensor) -> torch.Tensor:
    """Map indices (any shape, long) to trits in {-1, 0, +1} with a trailing axis of 9."""
    return (index.unsqueeze(-1) // _POWERS) % 3 - 1


def trits_to_index(trits: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`index_to_trits`: ``i = sum_j (x_j + 1) * 3**j``."""
    return ((trits.long() + 1) * _POWERS).sum(-1)


def valuation3(n: torch.Tensor) -> torch.Tensor:
    """3-adic valuation v3(n): the largest k with 3^k | n, for 0 < |n| < 3^9; v3(0) is defined here as 9.

    Defining v3(0) = 9 (above every non-zero difference of two indices) makes d3(i, i) = 0 the smallest
    distance, as the metric requires.
    """
    n = n.abs()
    v = torch.zeros_like(n)
    for k in range(1, N_TRITS + 1):
        v += (n % 3**k == 0).long()
    return v


def distance3(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """3-adic distance d3(i, j) = 3^(-v3(|i - j|)), with d3(i, i) = 0."""
    v = valuation3(i - j)
    d = torch.pow(3.0, -v.double())
    return torch.where(i == j, torch.zeros_like(d), d)


@dataclass(frozen=True)
class Split:
    """Indices of the train / val / test parts of the 19,683 operations."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def make_split(seed: int = 42, fractions: tuple[float, float] = (0.8, 0.1)) -> Split:
    """The 80/10/10 split (15,746 / 1,968 / 1,969) from a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(N_OPERATIONS, generator=g)
    n_train = int(N_OPERATIONS * fractions[0])
    n_val = int(N_OPERATIONS * fractions[1])
    return Split(perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])


def hold_out(part: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``part`` into (kept, held out): ``round(fraction * len(part))`` indices held out, chosen by a
    permutation seeded with ``seed``; both keep the order of ``part``."""
    n_held = round(fraction * len(part))
    if not 0 < n_held < len(part):
        raise ValueError(f"holdout fraction {fraction} leaves {n_held} of {len(part)} indices held out")
    held = torch.zeros(len(part), dtype=torch.bool)
    held[torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:n_held]] = True
    return part[~held], part[held]


class OperationSet:
    """All operations as one float tensor (19,683 x 9) plus their indices."""

    def __init__(self) -> None:
        self.index = torch.arange(N_OPERATIONS)
        self.trits = index_to_trits(self.index).float()

    def batches(
        self, part: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x, index) slices of ``part``, shuffled with ``generator`` when one is given.

        The last, smaller batch is kept so that every sample is seen once per epoch.
        """
        order = part[torch.randperm(len(part), generator=generator)] if generator is not None else part
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.trits[idx], idx
