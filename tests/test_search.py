"""Most-likely search and length limits, against brute-force enumeration of every word over a
3-letter vocabulary: the count bigram (fitted in closed form) and a briefly trained MLP."""

import itertools

import jax
import numpy as np
import pytest
from conftest import tiny_config

from jax_makemore import length_limits
from jax_makemore.errors import UserError
from jax_makemore.evaluate import score_words
from jax_makemore.prefix_probs import PrefixLogprobs, next_char_logprobs
from jax_makemore.restore import load_trained
from jax_makemore.sample import sample_words
from jax_makemore.search import most_likely, most_likely_search, prefix_nll
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


def every_word(loaded, prefix="", min_len=1, max_len=K, new=False):
    """(word, nll) of every word within the limits, scored by evaluate, most likely first
    (min_len 1: the search never lists the empty word)."""
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


def renormalised(loaded, prefix, min_len, max_len):
    """p(word | limits) by enumeration: every word within the limits scored by evaluate
    (exp of minus its NLL), divided by their sum. Also returns that sum, Z."""
    p = {w: np.exp(-x) for w, x in every_word(loaded, prefix, min_len, max_len)}
    Z = sum(p.values())
    return {w: v / Z for w, v in p.items()}, Z


def total_variation(words, q):
    """(TV distance of the words' frequencies from q, its expected value under sampling)."""
    N = len(words)
    counts = {w: 0 for w in q}
    for w in words:
        counts[w] += 1
    tv = 0.5 * sum(abs(counts[w] / N - q[w]) for w in q)
    noise = 0.5 * sum(np.sqrt(2 / np.pi * q[w] * (1 - q[w]) / N) for w in q)
    return tv, noise


@pytest.mark.parametrize("limits", [(0, "", 2, 3), (1, "b", 3, 2), (2, "", 0, 2)])
def test_length_limits_sample_the_renormalised_distribution(loaded, limits):
    """20,000 words within the limits: none outside, and their frequencies are the model's
    probabilities renormalised over the words within the limits (enumerated and scored by
    evaluate), within 2x the expected sampling noise. The survival table's mass Z is the
    enumerated sum (divided by the prefix's probability: the table's words follow it)."""
    seed, prefix, lo, hi = limits
    N = 20_000
    words = sample_words(loaded, jax.random.PRNGKey(seed), N, prefix=prefix, min_len=lo, max_len=hi)
    assert all(w.startswith(prefix) and lo <= len(w) <= len(prefix) + hi for w in words)
    q, Z = renormalised(loaded, prefix, lo, hi)
    tv, noise = total_variation(words, q)
    assert tv < 2 * noise
    assert length_limits.enumerable(loaded)
    table = length_limits.build_table(
        loaded, prefix, length_limits.limits_for(prefix, lo, hi), 1.0, 0
    )
    np.testing.assert_allclose(table.mass, Z / np.exp(-prefix_nll(loaded, prefix)), rtol=1e-4)


def test_the_survival_table_conditions_temperature_and_top_k_too(count_bigram):
    """At temperature 0.5 and top-k 2 the sampler's distribution is the count table's rows
    sharpened and truncated; within the limits it is that distribution renormalised."""
    loaded = count_bigram
    P = length_limits.context_probs(loaded, 0.5, 2)
    b, itos = loaded.vocab.boundary_id, loaded.vocab.itos
    assert np.all((P > 0).sum(axis=1) <= 2)

    def prob(word):
        prev, out = b, 1.0
        for c in [loaded.vocab.stoi[ch] for ch in word] + [b]:
            out, prev = out * P[prev, c], c
        return out

    words_in = ["".join(cs) for n in range(2, 4) for cs in itertools.product("abc", repeat=n)]
    p = {w: prob(w) for w in words_in if prob(w) > 0}
    q = {w: v / sum(p.values()) for w, v in p.items()}
    words = sample_words(loaded, jax.random.PRNGKey(3), 20_000, min_len=2, max_len=3,
                         temperature=0.5, top_k=2)  # fmt: skip
    assert set(words) <= set(q)
    tv, noise = total_variation(words, q)
    assert tv < 2 * noise
    assert itos[b] == "."


def test_limits_no_word_meets_with_probability_are_one_line_errors(count_bigram):
    with pytest.raises(UserError, match="no word of 3 to 3 generated characters"):
        sample_words(count_bigram, jax.random.PRNGKey(0), 5, min_len=3, max_len=3, top_k=1)


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    """A small Transformer over a, b, c: a sequence model, whose state is its whole word."""
    root = tmp_path_factory.mktemp("transformer")
    data = _write_words(root / "abc.txt")
    config, name = tiny_config("transformer", data, num_steps=200, steps_per_call=200,
                               n_layer=1, n_head=2, n_embd=16)  # fmt: skip
    train_and_evaluate(config, name, root / "w")
    return load_trained(root / "w")


@pytest.mark.heavy
def test_a_sequence_model_meets_length_limits_by_rejection_and_searches_on_its_cache(transformer):
    """The Transformer's words within the limits follow its renormalised distribution (drawn
    without limits, those outside redrawn); best-first search expands prefixes on the decoding
    cache and gives the enumerated most likely words, NLLs equal to evaluate's."""
    loaded = transformer
    assert not length_limits.enumerable(loaded)
    words = sample_words(loaded, jax.random.PRNGKey(0), 20_000, min_len=2, max_len=3)
    q, _ = renormalised(loaded, "", 2, 3)
    assert all(2 <= len(w) <= 3 for w in words)
    tv, noise = total_variation(words, q)
    assert tv < 2 * noise
    for limits in [dict(), dict(prefix="b", min_len=3, max_len=3)]:
        found = most_likely_search(loaded, 12, **{"max_len": K, **limits})
        assert found.exact and "decoding cache" in found.summary
        expected = every_word(loaded, **limits)[:12]
        assert [w for w, _ in found.words] == [w for w, _ in expected]
        np.testing.assert_allclose([x for _, x in found.words], [x for _, x in expected], rtol=1e-5)


@pytest.mark.heavy
def test_prefix_logprobs_on_the_cache_equal_a_forward_even_when_caches_are_dropped(transformer):
    """Expanding prefixes level by level on the cache (with room for a few caches only, so
    that some parents' caches are dropped and recomputed by a forward) gives the forward's
    log-probabilities, and most prefixes were stepped on a cache."""
    loaded = transformer
    scorer = PrefixLogprobs(loaded, cache_bytes=2 * 1024)
    level = [""]
    for _ in range(4):
        got = scorer(level)
        np.testing.assert_allclose(got, next_char_logprobs(loaded, level), atol=1e-5)
        level = [p + c for p in level for c in "abc"]
    assert scorer.stepped > scorer.forwarded > 0


def test_new_drops_the_empty_word_too(count_bigram):
    """The count table gives the empty word a little mass (its smoothing): plain samples hold
    some empty words, `new=True` none, and no line of the data file either."""
    key = jax.random.PRNGKey(0)
    plain = sample_words(count_bigram, key, 5_000)
    new = sample_words(count_bigram, key, 50, new=True)
    assert "" in plain and "" not in new
    assert not set(new) & (count_bigram.train_words | count_bigram.heldout_words)
