"""Cached decoding, for every model whose spec declares `decodes`: a decode step's logits are
the full forward's at that position, the cache takes the bytes its model docstring states, and
the cached sampler draws the words the recomputing one draws from the same key, within the
trained length L and past it (one rule: cache up to L, crop and recompute beyond).

Letters: R rows, L padded word length, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_makemore import decode, sample_speedups
from jax_makemore.data import Vocab
from jax_makemore.models import model_config, registry
from jax_makemore.models.base import decode_step, init_cache
from jax_makemore.sample import generate
from jax_makemore.sample_speedups import cache_lengths, phase_sizes

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


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.heavy) if n in ("transformer", "bow", "gru") else n
     for n in DECODING],
)  # fmt: skip
def test_decoded_logits_equal_the_full_forward_at_every_position(name):
    model, variables = tiny(name)
    idx_RxL = jax.random.randint(jax.random.PRNGKey(3), (R, L), 0, V)
    full_RxLxV = jax.jit(functools.partial(model.apply, train=False))(variables, idx_RxL)
    cache = init_cache(model, variables, R, L)
    step = jax.jit(functools.partial(decode_step, model))
    for t in range(L):
        logits_RxV, cache = step(variables, cache, idx_RxL[:, t : t + 1])
        np.testing.assert_allclose(logits_RxV, full_RxLxV[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.heavy) if n in ("transformer", "gru", "bow") else n
     for n in DECODING],
)  # fmt: skip
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
    cached = generate(model, variables, VOCAB, key, num, spec=registry()[name], **kw)
    recomputed = generate(model, variables, VOCAB, key, num, recompute=True, **kw)
    return cached, recomputed


@pytest.mark.heavy
@pytest.mark.parametrize("name", DECODING)
def test_cached_and_recomputed_samples_are_the_same_words_within_and_past_L(name):
    """2,100 words: four phases, so the cache rows are gathered with their words; some words
    run past L - 1 characters, where both samplers crop and recompute. Sampled and greedy."""
    cached, recomputed = _both(name, 2100, prefix="a", temperature=0.8)
    assert cached == recomputed
    assert sum(len(w) >= L for w in cached) >= 20  # past L: buffer positions beyond L - 1
    cached, recomputed = _both(name, 2100, prefix="a", top_k=1)
    assert cached == recomputed and len(set(cached)) == 1


def test_phases_shrink_by_a_quarter_down_to_16_rows_from_2048_words():
    assert phase_sizes(10_000) == [10_000, 2_500, 625, 157, 40]
    assert phase_sizes(2_100) == [2_100, 525, 132, 33]
    assert phase_sizes(2_047) == [2_047] and phase_sizes(1) == [1]  # one call: one phase


#: 2,100 words through the phases, many of them past L
_KW = dict(layout="sequences", input_len=L, max_len=L + 4, prefix="a", temperature=0.8)


def short_words(variables, boundary_logit: float):
    """The tiny Transformer's variables with the boundary token's logit raised by
    `boundary_logit` at every position (ln_f's feature 0 made the constant 1, and its lm_head
    row raising that logit only): most words end within a few steps."""
    p = variables["params"]
    ln_f = {"scale": p["ln_f"]["scale"].at[0].set(0.0), "bias": p["ln_f"]["bias"].at[0].set(1.0)}
    kernel_CxV = p["lm_head"]["kernel"].at[0].set(0.0).at[0, VOCAB.boundary_id].set(boundary_logit)
    return {**variables, "params": {**p, "ln_f": ln_f, "lm_head": {"kernel": kernel_CxV}}}


@pytest.fixture
def fresh_samplers():
    """Samplers compiled afresh in the test, and again after it (what `cache_lengths` says is
    read when a sampler is traced)."""
    sample_speedups.make_sampler.cache_clear()
    decode.make_sampler.cache_clear()
    yield
    sample_speedups.make_sampler.cache_clear()
    decode.make_sampler.cache_clear()


# compiles every cache stage of the Transformer (17-38 s on 2 cores): the heavy tier
@pytest.mark.heavy
@pytest.mark.parametrize("short", [False, True])
def test_the_growing_cache_changes_no_word(short, fresh_samplers, monkeypatch):
    """2,100 words of the Transformer through four phases, the first on a cache of 2, then 4
    positions, from which it either runs on to the full cache (long words) or leaves for the
    next phase (short words): the recomputing sampler's words, and those of a cache that holds
    all L positions from the start; some run past L."""
    model, variables = tiny("transformer")
    variables = short_words(variables, 1.5) if short else variables
    assert cache_lengths(model, variables, L, 2, L - 1) == (2, 4, L)
    assert cache_lengths(*tiny("gru"), L, 2, L - 1) == (L,)  # a state of one size: no stages
    key = jax.random.PRNGKey(4)
    spec = registry()["transformer"]
    growing = generate(model, variables, VOCAB, key, 2100, spec=spec, **_KW)
    assert sum(len(w) >= L for w in growing) >= 10
    after = [sum(len(w) - 1 >= k for w in growing) for k in (1, 3)]  # generating after k steps
    assert after[0] > 525 and (after[1] <= 525) == short  # 525: the second phase's rows
    assert generate(model, variables, VOCAB, key, 2100, recompute=True, **_KW) == growing
    sample_speedups.make_sampler.cache_clear()
    monkeypatch.setattr(sample_speedups, "cache_lengths", lambda *a: (L,))
    assert generate(model, variables, VOCAB, key, 2100, spec=spec, **_KW) == growing


@pytest.mark.heavy
@pytest.mark.parametrize("name", DECODING)
def test_a_prefix_longer_than_L_is_recomputed_from_the_first_step(name):
    prefix = "abcdefghij"  # L + 1 characters
    for top_k in (1, 4):
        cached, recomputed = _both(name, 50, prefix=prefix, top_k=top_k)
        assert cached == recomputed and all(w.startswith(prefix) for w in cached)


def test_a_spec_that_does_not_decode_samples_by_recompute(fresh_samplers, monkeypatch):
    """The sampler decodes from the cache only when the spec it is given says so: with the
    decode step broken, a GRU whose spec does not decode (or no spec) still samples, and its
    words are the recomputing sampler's; the GRU's own spec reaches the broken step."""
    gru, variables = tiny("gru")
    spec = registry()["gru"]
    kw = dict(layout="sequences", input_len=L, max_len=L + 2, top_k=3)
    key = jax.random.PRNGKey(5)
    recomputed = generate(gru, variables, VOCAB, key, 20, spec=spec, recompute=True, **kw)

    def broken(*args, **kwargs):
        raise RuntimeError("decode step called")

    monkeypatch.setattr(decode, "decode_step", broken)
    no_decode = dataclasses.replace(spec, decodes=False)
    assert generate(gru, variables, VOCAB, key, 20, spec=no_decode, **kw) == recomputed
    assert generate(gru, variables, VOCAB, key, 20, **kw) == recomputed
    with pytest.raises(RuntimeError, match="decode step called"):
        generate(gru, variables, VOCAB, key, 20, spec=spec, **kw)


def tiny_mlp():
    """A tiny windows model (BatchNorm MLP, 3-character window) with perturbed variables."""
    model = registry()["mlp"].build(model_config("mlp", block_size=3, n_embd=4, n_hidden=16), V, L)
    variables = dict(model.init(jax.random.PRNGKey(0), jnp.zeros((2, 3), jnp.int32), train=False))
    variables["params"] = _perturbed(variables["params"], jax.random.PRNGKey(1), 0.3)
    stats = _perturbed(variables["batch_stats"], jax.random.PRNGKey(2), 0.2)
    variables["batch_stats"] = jax.tree.map(jnp.abs, stats)
    return model, variables


# a windows model below the phase threshold by default; above it, and the decoding models
# (every cache stage compiled), in the heavy tier
@pytest.mark.parametrize(
    "name, num",
    [("mlp", 100), pytest.param("mlp", 2100, marks=pytest.mark.heavy),
     pytest.param("gru", 100, marks=pytest.mark.heavy),
     pytest.param("gru", 2100, marks=pytest.mark.heavy),
     pytest.param("transformer", 100, marks=pytest.mark.heavy),
     pytest.param("transformer", 2100, marks=pytest.mark.heavy)],
)  # fmt: skip
def test_the_speedups_change_no_word(name, num):
    """The plain loop and the phased, growing-cache sampler draw the same words, below the
    phase threshold (one phase) and above it (four phases), some words past L."""
    model, variables = tiny_mlp() if name == "mlp" else tiny(name)
    spec = registry()[name]
    layout, width = spec.layout, 3 if name == "mlp" else L
    assert len(phase_sizes(num)) == (1 if num < 2048 else 4)
    kw = dict(layout=layout, input_len=width, max_len=L + 4, temperature=0.8, spec=spec)
    key = jax.random.PRNGKey(6)
    fast = generate(model, variables, VOCAB, key, num, **kw)
    plain = generate(model, variables, VOCAB, key, num, speedups=False, **kw)
    assert fast == plain and len(set(fast)) > num // 4
    assert sum(len(w) >= L for w in fast) >= 1
