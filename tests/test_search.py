"""Most-likely search and length limits, against brute-force enumeration of every word over a
3-letter vocabulary: the count bigram (fitted in closed form) and a briefly trained MLP."""

import itertools

import jax
import numpy as np
import pytest
from conftest import tiny_config

from jax_makemore.errors import UserError
from jax_makemore.evaluate import score_words
from jax_makemore.restore import load_trained
from jax_makemore.sample import sample_words
from jax_makemore.search import most_likely, most_likely_search
from jax_makemore.train import train_and_evaluate

K = 4  # longest word enumerated (generated characters)


def _write_words(path):
    rng = np.random.default_rng(0)
    # a skewed alphabet, so that words differ clearly in probability
    words = ["".join(rng.choice(list("abc"), p=[0.6, 0.3, 0.1], size=rng.integers(1, 5)))
             for _ in range(300)]  # fmt: skip
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return path


def _trained(name: str, root):
    data = _write_words(root / "abc.txt")
    if name == "mlp":
        extra = dict(num_steps=300, steps_per_call=300, block_size=2, n_embd=4, n_hidden=16)
    else:
        extra = {}
    config, config_name = tiny_config(name, data, **extra)
    train_and_evaluate(config, config_name, root / "w")
    return load_trained(root / "w")


@pytest.fixture(scope="module", params=["bigram_counts", "mlp"])
def loaded(request, tmp_path_factory):
    return _trained(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def count_bigram(tmp_path_factory):
    """The count table over a, b, c: the model whose masked probabilities enumerate exactly."""
    return _trained("bigram_counts", tmp_path_factory.mktemp("counts"))


def every_word(loaded, prefix="", min_len=0, max_len=K, new=False):
    """(word, nll) of every word within the limits, scored by evaluate, most likely first."""
    words = [
        prefix + "".join(chars)
        for n in range(max_len + 1)
        for chars in itertools.product("abc", repeat=n)
        if len(prefix) + n >= min_len
    ]
    if new:
        words = [w for w in words if w not in loaded.train_words | loaded.heldout_words]
    scored = [(s["word"], s["nll"]) for s in score_words(loaded, words)]
    return sorted(scored, key=lambda x: x[1])


@pytest.mark.parametrize(
    "limits",
    [dict(), dict(prefix="b"), dict(min_len=3, new=True), dict(prefix="c", min_len=2, max_len=3)],
)
def test_best_first_search_gives_the_exact_most_likely_words_in_order(loaded, limits):
    n = 12
    found = most_likely_search(loaded, n, **{"max_len": K, **limits})
    assert found.exact and "exact best-first" in found.summary
    expected = every_word(loaded, **limits)[:n]
    assert [w for w, _ in found.words] == [w for w, _ in expected]
    np.testing.assert_allclose([x for _, x in found.words], [x for _, x in expected], rtol=1e-5)
    nlls = [x for _, x in found.words]
    assert nlls == sorted(nlls)


def test_past_its_budget_the_search_runs_beam_search_and_says_so(loaded):
    found = most_likely_search(loaded, 10, max_len=K, budget=1, beam_width=3**K)
    assert not found.exact and "beam search of width 81" in found.summary
    # a beam as wide as every prefix keeps them all: the exact answer
    assert found.words == most_likely(loaded, 10, max_len=K)
    narrow = most_likely_search(loaded, 10, max_len=K, budget=1, beam_width=3).words
    nlls = [x for _, x in narrow]
    assert len(narrow) == 10 and nlls == sorted(nlls)
    scored = dict(every_word(loaded))
    assert all(abs(scored[w] - x) < 1e-4 for w, x in narrow)


def test_search_refuses_limits_no_word_meets(loaded):
    with pytest.raises(UserError, match="--min_len 9 exceeds"):
        most_likely(loaded, 3, min_len=9, max_len=K)
    with pytest.raises(UserError, match="--top must be > 0"):
        most_likely(loaded, 0)


def masked_probabilities(loaded, min_len, max_len):
    """q(word) of the masked sampler, from the bigram table: each step's conditional, the end
    token's mass spread over the others while the word is shorter than min_len; a word of
    max_len characters ends there (probability 1)."""
    p_VxV = np.exp(np.asarray(loaded.variables["params"]["log_probs"], np.float64))
    p_VxV /= p_VxV.sum(axis=1, keepdims=True)
    b, stoi = loaded.vocab.boundary_id, loaded.vocab.stoi
    q = {}
    for n in range(min_len, max_len + 1):
        for chars in itertools.product("abc", repeat=n):
            prob, prev = 1.0, b
            for j, ch in enumerate(chars):
                row = p_VxV[prev]
                prob *= row[stoi[ch]] / (1 - row[b]) if j < min_len else row[stoi[ch]]
                prev = stoi[ch]
            q["".join(chars)] = prob * (p_VxV[prev, b] if n < max_len else 1.0)
    return q


def test_length_limits_sample_the_masked_distribution_of_the_count_bigram(count_bigram):
    """20,000 words with 2 <= length <= 4: none outside, and their frequencies are the masked
    sampler's exact probabilities (total variation within 2x its expected sampling noise)."""
    loaded = count_bigram
    N, lo, hi = 20_000, 2, 3
    words = sample_words(loaded, jax.random.PRNGKey(0), N, min_len=lo, max_len=hi)
    assert all(lo <= len(w) <= hi for w in words)
    q = masked_probabilities(loaded, lo, hi)
    assert abs(sum(q.values()) - 1) < 1e-9
    counts = {w: 0 for w in q}
    for w in words:
        counts[w] += 1
    tv = 0.5 * sum(abs(counts[w] / N - q[w]) for w in q)
    noise = 0.5 * sum(np.sqrt(2 / np.pi * q[w] * (1 - q[w]) / N) for w in q)
    assert tv < 2 * noise
