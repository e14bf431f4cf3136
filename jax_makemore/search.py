"""The most likely words of a trained model: `most_likely(trained, n)` -> [(word, nll)].

A word's NLL is the sum of -log p over its characters and the end token, the prefix included
(what `evaluate.score_words` gives). Exact best-first search: a priority queue of prefixes by
NLL; popping a prefix expands it into its children (each next character, and the end token,
which completes the word). Since NLLs only grow along a word, a completed word popped off the
queue is more likely than every word not yet popped, so the words come out exactly in order.
The frontier is expanded up to EXPAND_BATCH prefixes per forward (those popped before the next
complete word; expanding more than needed keeps the order exact). When the search expands more
than `budget` prefixes, it stops and beam search runs instead (`beam_width` prefixes kept per
length): not exact, and the result says which ran.

Limits: `min_len` masks the end token for words shorter than that (the prefix counts; at
least 1: the empty word is never listed);
`max_len` (generated characters, 0: the model's default) forces it after that many; `new` and
`exclude` skip words of the data file / of that set. A sequence model whose spec decodes
expands each prefix on its parent's decoding cache (`prefix_probs.PrefixLogprobs`: one decode
step per prefix); other models by a forward over the window or the last L positions of each
prefix, a batch of prefixes per call.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from jax_makemore.errors import UserError
from jax_makemore.prefix_probs import PrefixLogprobs, next_char_logprobs
from jax_makemore.restore import LoadedModel

#: Prefixes expanded per forward.
EXPAND_BATCH = 256
#: Best-first search gives up after this many expanded prefixes (then beam search runs).
DEFAULT_BUDGET = 20_000


class Found(NamedTuple):
    """The words (word, nll), most likely first, and a one-line account of the search."""

    words: list[tuple[str, float]]
    summary: str
    exact: bool


class _Limits(NamedTuple):
    prefix: str
    min_len: int
    max_len: int  # generated characters
    banned: frozenset[str]
    logprobs: PrefixLogprobs  # the model's next-character log-probabilities of prefixes


def excluded_words(trained: LoadedModel, new: bool, exclude: Iterable[str] = ()) -> set[str]:
    """The words --new and --exclude drop: the data file's lines and the empty word, which is
    no name (new), and `exclude`."""
    out = set(exclude)
    if new:
        if trained.train_words is None or trained.heldout_words is None:
            raise UserError(
                f"--new needs the data file the model was trained on, and "
                f"'{trained.config.data_path}' is missing or changed (config key data_path)"
            )
        out |= trained.train_words | trained.heldout_words | {""}
    return out


def _children(trained: LoadedModel, lim: _Limits, prefixes: list[str]) -> list[np.ndarray]:
    """For each prefix, its children's -log p: the V - 1 characters, then the end token last
    (inf where the limits forbid it)."""
    logp_PxV = lim.logprobs(prefixes)
    b = trained.vocab.boundary_id
    out = []
    for prefix, logp_V in zip(prefixes, logp_PxV, strict=True):
        nll_V = -logp_V
        if len(prefix) < lim.min_len:
            nll_V[b] = np.inf
        if len(prefix) - len(lim.prefix) >= lim.max_len:
            nll_V = np.where(np.arange(len(nll_V)) == b, nll_V, np.inf)
        out.append(nll_V)
    return out


def prefix_nll(trained: LoadedModel, prefix: str) -> float:
    """-log p of the prefix's characters (no end token): the NLL every word starts from."""
    if not prefix:
        return 0.0
    logp_PxV = next_char_logprobs(trained, [prefix[:i] for i in range(len(prefix))])
    ids = trained.vocab.encode(prefix)
    return float(-sum(logp_PxV[i, c] for i, c in enumerate(ids)))


def best_first(
    trained: LoadedModel, n: int, lim: _Limits, budget: int
) -> list[tuple[str, float]] | None:
    """The n most likely words in order (fewer if fewer exist), or None past `budget`."""
    itos, b = trained.vocab.itos, trained.vocab.boundary_id
    heap: list[tuple[float, bool, str]] = [(prefix_nll(trained, lim.prefix), False, lim.prefix)]
    words: list[tuple[str, float]] = []
    expanded = 0
    while heap and len(words) < n:
        batch: list[tuple[float, str]] = []
        while heap and len(batch) < EXPAND_BATCH:
            nll, complete, text = heapq.heappop(heap)
            if complete and batch:  # the batch's children may come before it
                heapq.heappush(heap, (nll, complete, text))
                break
            if complete:
                if text not in lim.banned:
                    words.append((text, nll))
                break
            batch.append((nll, text))
        if not batch:
            continue
        expanded += len(batch)
        if expanded > budget:
            return None
        children = _children(trained, lim, [t for _, t in batch])
        for (nll, text), nll_V in zip(batch, children, strict=True):
            for c in np.flatnonzero(np.isfinite(nll_V)):
                end = c == b
                heapq.heappush(heap, (nll + nll_V[c], bool(end), text if end else text + itos[c]))
    return words


def beam(trained: LoadedModel, n: int, lim: _Limits, width: int) -> list[tuple[str, float]]:
    """The n most likely words that beam search of `width` prefixes per length finds."""
    itos, b = trained.vocab.itos, trained.vocab.boundary_id
    beams = [(prefix_nll(trained, lim.prefix), lim.prefix)]
    done: list[tuple[float, str]] = []
    while beams:
        cands: list[tuple[float, str]] = []
        children = _children(trained, lim, [t for _, t in beams])
        for (nll, text), nll_V in zip(beams, children, strict=True):
            for c in np.flatnonzero(np.isfinite(nll_V)):
                if c == b:
                    if text not in lim.banned:
                        done.append((nll + nll_V[c], text))
                else:
                    cands.append((nll + nll_V[c], text + itos[c]))
        done = sorted(done)[:n]
        beams = sorted(cands)[:width]
        if len(done) == n and beams and beams[0][0] >= done[-1][0]:
            break  # no kept prefix can beat the n-th word found
    return [(w, float(nll)) for nll, w in done]


def most_likely_search(
    trained: LoadedModel,
    n: int,
    *,
    prefix: str = "",
    new: bool = False,
    min_len: int = 0,
    max_len: int = 0,
    exclude: Iterable[str] = (),
    budget: int = DEFAULT_BUDGET,
    beam_width: int = 0,
) -> Found:
    """`most_likely`, with the account of which search ran (`Found`)."""
    if n <= 0:
        raise UserError(f"--top must be > 0, got {n}")
    trained.vocab.check_known(prefix, f"--prefix {prefix!r}")
    max_len = max_len or trained.default_max_len
    min_len = max(min_len, 1)  # a name has a character
    if min_len > len(prefix) + max_len:
        raise UserError(f"--min_len {min_len} exceeds the prefix plus --max_len {max_len}")
    banned = frozenset(excluded_words(trained, new, exclude))
    logprobs = PrefixLogprobs(trained)
    lim = _Limits(prefix, min_len, max_len, banned, logprobs)
    on = "; prefixes expanded on the decoding cache" if logprobs.on_cache else ""
    words = best_first(trained, n, lim, budget)
    if words is not None:
        how = f"exact best-first search (within {budget} expanded prefixes){on}"
        return Found(words, f"{len(words)} most likely words: {how}", True)
    width = beam_width or max(4 * n, 64)
    words = beam(trained, n, lim, width)
    how = f"best-first search passed {budget} expanded prefixes: beam search of width {width}{on}"
    return Found(words, f"{len(words)} likely words (not exact): {how}", False)


def most_likely(
    trained: LoadedModel,
    n: int,
    prefix: str = "",
    new: bool = False,
    min_len: int = 0,
    max_len: int = 0,
    **kw,
) -> list[tuple[str, float]]:
    """The n words of highest probability under the model (end token included), each with
    its NLL, most likely first, within the limits (module docstring). `kw`: `exclude`,
    `budget`, `beam_width`."""
    found = most_likely_search(
        trained, n, prefix=prefix, new=new, min_len=min_len, max_len=max_len, **kw
    )
    return found.words
