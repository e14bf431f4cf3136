import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_makemore.data import Vocab, context_windows, read_words
from jax_makemore.loss import mean_nll as cross_entropy
from jax_makemore.models.bigram import CountBigram, NeuralBigram, count_table, fit_log_probs
from jax_makemore.models.mlp import MLP


@pytest.mark.parametrize("use_batchnorm", [True, False])
def test_mlp_forward_in_eval_mode_equals_numpy(use_batchnorm):
    """Embedding rows, concatenation, hidden layer, BatchNorm on the running statistics, tanh
    and the output layer, each sown intermediate and the logits against float64 NumPy (the
    shapes are the contract test's)."""
    B, T, E, H, V = 5, 3, 4, 6, 11
    model = MLP(vocab_size=V, block_size=T, n_embd=E, n_hidden=H, use_batchnorm=use_batchnorm)
    idx = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, V)
    variables = model.init(jax.random.PRNGKey(0), idx, train=False)
    # every value random: the init's zero biases, unit gain and zero mean would hide a mix-up
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32), variables)
    if use_batchnorm:
        variables["batch_stats"]["BatchNorm_0"]["var"] = rng.uniform(0.5, 2.0, H).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        logits, state = model.apply(variables, idx, train=False, mutable=["intermediates"])
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    ids = np.asarray(idx)
    emb = p["params"]["Embed_0"]["embedding"][ids]
    pre = emb.reshape(B, T * E) @ p["params"]["Dense_0"]["kernel"]
    if use_batchnorm:
        bn, stats = p["params"]["BatchNorm_0"], p["batch_stats"]["BatchNorm_0"]
        pre = (pre - stats["mean"]) / np.sqrt(stats["var"] + model.bn_eps) * bn["scale"]
        pre = pre + bn["bias"]
    else:
        pre = pre + p["params"]["Dense_0"]["bias"]
    h = np.tanh(pre)
    out = h @ p["params"]["Dense_1"]["kernel"] + p["params"]["Dense_1"]["bias"]
    sown = state["intermediates"]
    np.testing.assert_allclose(sown["emb_BxTxE"][0], emb, rtol=1e-6)
    np.testing.assert_allclose(sown["preact_BxH"][0], pre, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sown["h_BxH"][0], h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits, out, rtol=1e-4, atol=1e-5)


def test_hidden_layer_has_no_bias_with_batchnorm_and_a_bias_without():
    idx = jnp.zeros((2, 3), jnp.int32)
    with_bn = MLP(vocab_size=27).init(jax.random.PRNGKey(0), idx, train=False)
    without = MLP(vocab_size=27, use_batchnorm=False).init(jax.random.PRNGKey(0), idx, train=False)
    assert "bias" not in with_bn["params"]["Dense_0"] and "batch_stats" in with_bn
    assert "bias" in without["params"]["Dense_0"] and "batch_stats" not in without


@pytest.fixture(scope="module")
def names_batch():
    words = read_words(__import__("jax_makemore").DEFAULT_DATA_PATH)[:3000]
    vocab = Vocab.from_words(words)
    X, Y = context_windows(words, vocab, 3)
    idx = np.random.default_rng(0).choice(len(X), 4096, replace=False)
    return vocab, jnp.asarray(X[idx]), jnp.asarray(Y[idx])


def test_first_loss_is_about_ln_vocab_size(names_batch):
    vocab, X, Y = names_batch
    for use_bn in (True, False):
        model = MLP(vocab_size=vocab.size, use_batchnorm=use_bn)
        variables = model.init(jax.random.PRNGKey(1), X[:2], train=False)
        logits, _ = model.apply(variables, X, train=True, mutable=["batch_stats"])
        assert abs(float(cross_entropy(logits, Y)) - math.log(vocab.size)) < 0.05


def test_init_preactivations_are_unit_scale_and_rarely_saturated(names_batch):
    vocab, X, _ = names_batch
    model = MLP(vocab_size=vocab.size)
    variables = model.init(jax.random.PRNGKey(2), X[:2], train=False)
    _, state = model.apply(variables, X, train=True, mutable=["batch_stats", "intermediates"])
    preact = state["intermediates"]["preact_BxH"][0]
    h = state["intermediates"]["h_BxH"][0]
    assert abs(float(preact.std()) - 1.0) < 0.2
    assert float(jnp.mean(jnp.abs(h) > 0.97)) < 0.10


def _pure_python_bigram_nll(words, smoothing):
    counts = {}
    chars = sorted(set("".join(words)))
    for w in words:
        seq = ["."] + list(w) + ["."]
        for a, b in zip(seq, seq[1:], strict=False):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    alphabet = chars + ["."]
    total_nll, n = 0.0, 0
    for w in words:
        seq = ["."] + list(w) + ["."]
        for a, b in zip(seq, seq[1:], strict=False):
            row = sum(counts.get((a, c), 0) + smoothing for c in alphabet)
            total_nll -= math.log((counts.get((a, b), 0) + smoothing) / row)
            n += 1
    return total_nll / n


def test_count_bigram_nll_equals_pure_python_counting():
    words = read_words(__import__("jax_makemore").DEFAULT_DATA_PATH)[:500]
    vocab = Vocab.from_words(words)
    X, Y = context_windows(words, vocab, 1)
    for smoothing in (0.0, 1.0):
        log_probs = fit_log_probs(
            count_table(jnp.asarray(X), jnp.asarray(Y), vocab.size), smoothing
        )
        model = CountBigram(vocab_size=vocab.size)
        logits = model.apply({"params": {"log_probs": log_probs}}, jnp.asarray(X), train=False)
        ours = float(cross_entropy(logits, jnp.asarray(Y)))
        assert ours == pytest.approx(_pure_python_bigram_nll(words, smoothing), abs=1e-5)


def test_count_table_matches_numpy_counting():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(200, 2)).astype(np.int32)
    Y = rng.integers(0, 6, size=(200,)).astype(np.int32)
    expected = np.zeros((6, 6))
    np.add.at(expected, (X[:, -1], Y), 1)
    np.testing.assert_array_equal(
        np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), 6)), expected
    )


def test_neural_bigram_is_one_hot_matmul():
    model = NeuralBigram(vocab_size=5)
    idx = jnp.array([[0], [3], [4]], jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), idx, train=False)
    W = variables["params"]["W"]
    chex.assert_trees_all_close(
        model.apply(variables, idx, train=False), W[jnp.array([0, 3, 4])], atol=1e-6
    )
