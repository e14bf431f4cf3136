"""Steps and seeds of every experiment: the full run and --quick."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps and seeds of every experiment. The full run is sized for about 40 minutes on a
    2-core CPU shared with other jobs; --quick for under 5 minutes (the same experiments and
    code paths, fewer steps, seeds and block sizes)."""

    seeds: int
    mlp_steps: int  # the notes' MLP recipe, SGD 0.1 then 0.01 from half-way
    deep_steps: int  # the 5-layer tanh MLP
    bigram_steps: int  # full-batch gradient descent of the bigrams, as in the first lecture
    equal_steps: int  # the mini-batch comparison at equal steps (the full split is costly)
    num_samples: int  # sampled words per member for the name-length claim
    raw_lrs: tuple[float, ...]  # learning rates tried for the raw-integer bigram
    block_sizes: tuple[int, ...]  # must include 3 and 8


FULL = Budget(4, 20_000, 10_000, 300, 20, 2_000, (0.01, 0.1, 1.0), tuple(range(1, 9)))
QUICK = Budget(2, 300, 200, 10, 2, 200, (0.1,), (1, 3, 8))


def seeds_of(budget: Budget) -> str:
    """'seeds 0–3': the seeds of a budget, for table rows."""
    return f"seeds 0–{budget.seeds - 1}"
