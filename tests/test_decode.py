"""Cached decoding, for every model whose spec declares `decodes`: a decode step's logits are
the full forward's at that position, the cache takes the bytes its model docstring states, and
the cached sampler draws the words the recomputing one draws from the same key, within the
trained length L and past it (one rule: cache up to L, crop and recompute beyond).

Letters: R rows, L padded word length, V vocabulary.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_makemore.data import Vocab
from jax_makemore.models import model_config, registry
from jax_makemore.models.base import decode_step, init_cache
from jax_makemore.models.rnn import GRU
from jax_makemore.sample import generate, spec_decodes

VOCAB = Vocab.from_words(["abcdefghij"])  # 10 letters and the boundary token
V, L, R = VOCAB.size, 9, 3
TINY = {
    "rnn": dict(n_embd=8, n_embd2=16),
    "gru": dict(n_embd=8, n_embd2=16),
    "bow": dict(n_embd=8, n_embd2=16),
    "transformer": dict(n_layer=2, n_head=2, n_embd=8),
    "wavenet_conv": dict(n_embd=4, n_hidden=8),
}
DECODING = sorted(n for n, spec in registry().items() if spec.decodes)
F32 = 4  # bytes


#: The cache's bytes for R rows, as each model's docstring states them.
CACHE_BYTES = {
    "transformer": lambda m, R: 2 * m.n_layer * R * m.seq_len * m.n_embd * F32 + 4,
    "rnn": lambda m, R: R * m.n_embd2 * F32 + 4,
    "gru": lambda m, R: R * m.n_embd2 * F32 + 4,
    "bow": lambda m, R: R * m.n_embd * F32 + 4,
    "wavenet_conv": lambda m, R: R * (m.n_embd + (m.block_size - 2) * m.n_hidden) * F32 + 4,
}


@jax.jit
def _perturbed(tree, key, scale):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


@functools.cache
def tiny(name: str):
    """The tiny module and variables that are not at their init: every parameter moved (a
    non-zero start state, sharper logits) and running statistics away from 0 and 1."""
    model = registry()[name].build(model_config(name, **TINY[name]), V, L)
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init(jax.random.PRNGKey(0), jnp.zeros((2, L), jnp.int32))
    variables = dict(variables)
    variables["params"] = _perturbed(variables["params"], jax.random.PRNGKey(1), 0.3)
    if "batch_stats" in variables:
        stats = _perturbed(variables["batch_stats"], jax.random.PRNGKey(2), 0.2)
        variables["batch_stats"] = jax.tree.map(jnp.abs, stats)  # variances stay positive
    return model, variables


def test_every_sequence_model_decodes():
    sequences = sorted(n for n, spec in registry().items() if spec.layout == "sequences")
    assert DECODING == sequences


@pytest.mark.parametrize("name", DECODING)
def test_decoded_logits_equal_the_full_forward_at_every_position(name):
    model, variables = tiny(name)
    idx_RxL = jax.random.randint(jax.random.PRNGKey(3), (R, L), 0, V)
    full_RxLxV = jax.jit(functools.partial(model.apply, train=False))(variables, idx_RxL)
    cache = init_cache(model, variables, R, L)
    step = jax.jit(functools.partial(decode_step, model))
    for t in range(L):
        logits_RxV, cache = step(variables, cache, idx_RxL[:, t : t + 1])
        np.testing.assert_allclose(logits_RxV, full_RxLxV[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", DECODING)
def test_the_cache_takes_the_bytes_its_docstring_states(name):
    model, variables = tiny(name)
    for rows in (1, 7):
        cache = init_cache(model, variables, rows, L)
        nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves(cache))
        assert nbytes == CACHE_BYTES[name](model, rows)
        assert all(not np.any(leaf) for leaf in jax.tree.leaves(cache))  # empty: all zeros


def _both(name, num, **kw):
    """The words of the cached and of the recomputing sampler, from one key."""
    model, variables = tiny(name)
    kw = dict(layout="sequences", input_len=L, max_len=L + 4, **kw)
    key = jax.random.PRNGKey(4)
    cached = generate(model, variables, VOCAB, key, num, **kw)
    recomputed = generate(model, variables, VOCAB, key, num, recompute=True, **kw)
    return cached, recomputed


@pytest.mark.parametrize("name", DECODING)
def test_cached_and_recomputed_samples_are_the_same_words_within_and_past_L(name):
    """2,100 words: two phases, so the cache rows are gathered with their words; some words
    run past L - 1 characters, where both samplers crop and recompute. Sampled and greedy."""
    cached, recomputed = _both(name, 2100, prefix="a", temperature=0.8)
    assert cached == recomputed
    assert sum(len(w) >= L for w in cached) >= 20  # past L: buffer positions beyond L - 1
    cached, recomputed = _both(name, 2100, prefix="a", top_k=1)
    assert cached == recomputed and len(set(cached)) == 1


@pytest.mark.parametrize("name", DECODING)
def test_a_prefix_longer_than_L_is_recomputed_from_the_first_step(name):
    prefix = "abcdefghij"  # L + 1 characters
    for top_k in (1, 4):
        cached, recomputed = _both(name, 50, prefix=prefix, top_k=top_k)
        assert cached == recomputed and all(w.startswith(prefix) for w in cached)


def test_a_module_of_no_registered_class_samples_by_recompute():
    class Unregistered(GRU):
        pass

    gru, variables = tiny("gru")
    model = Unregistered(vocab_size=V, **TINY["gru"])
    assert spec_decodes(gru) and not spec_decodes(model)
    kw = dict(layout="sequences", input_len=L, max_len=L + 2, top_k=1)
    words = generate(model, variables, VOCAB, jax.random.PRNGKey(5), 20, **kw)
    assert words == generate(gru, variables, VOCAB, jax.random.PRNGKey(5), 20, **kw)
