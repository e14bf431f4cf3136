"""The model contract, for every registered model: shapes, jit, first loss, causality and
padding invariance of sequence models; the two data layouts and the masked loss; and per model
on a small config: training lowers the loss, --resume is bit-identical, sampling is seeded."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from jax_makemore import checkpoint as ckpt
from jax_makemore.data import IGNORE, Vocab, context_windows, sequences
from jax_makemore.loss import masked_nll, mean_nll
from jax_makemore.models import input_length, model_config, model_names, registry
from jax_makemore.restore import load_trained
from jax_makemore.sample import generate
from jax_makemore.train import train_and_evaluate
from jax_makemore.workdir import read_jsonl

#: Small sizes so that every model trains in seconds; a model not listed runs at its defaults.
TINY = {
    "mlp": dict(n_embd=4, n_hidden=16),
    "mlp_manual": dict(n_embd=4, n_hidden=16),
    "rnn": dict(n_embd=8, n_embd2=16),
    "gru": dict(n_embd=8, n_embd2=16),
    "bow": dict(n_embd=8, n_embd2=16),
    "transformer": dict(n_layer=1, n_head=2, n_embd=8),
    "wavenet": dict(n_embd=4, n_hidden=8),
    "wavenet_conv": dict(n_embd=4, n_hidden=8),
}
V, L, B = 11, 9, 4  # vocabulary, padded word length, batch


def tiny_model(name: str, **extra):
    spec = registry()[name]
    sizes = {k: v for k, v in TINY.get(name, {}).items() if k in spec.hyperparameters()}
    return spec, spec.build(model_config(name, **sizes, **extra), V, L)


def tokens(spec, key, batch=B):
    T = spec.build(model_config(spec.name), V, L).block_size if spec.layout == "windows" else L
    return jax.random.randint(key, (batch, T), 0, V)


def init(model, idx):
    return model.init(jax.random.PRNGKey(0), idx, train=False)


def apply_train(model, variables, idx):
    rngs = {"dropout": jax.random.PRNGKey(5)}
    logits, _ = model.apply(variables, idx, train=True, mutable=["batch_stats"], rngs=rngs)
    return logits


@pytest.mark.heavy
class ContractTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_shapes_and_jit_equal_no_jit(self):
        for name in model_names():
            spec, model = tiny_model(name)
            idx = tokens(spec, jax.random.PRNGKey(1))
            variables = init(model, idx)
            logits = self.variant(lambda v, x, m=model: m.apply(v, x, train=False))(variables, idx)
            expected = (B, V) if spec.layout == "windows" else (B, L, V)
            chex.assert_shape(logits, expected)
            chex.assert_tree_all_finite(logits)
            eager = model.apply(variables, idx, train=False)
            chex.assert_trees_all_close(logits, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.heavy
@pytest.mark.parametrize("name", model_names())
def test_first_loss_is_about_ln_vocab_size(name):
    spec = registry()[name]
    model = spec.build(model_config(name), 27, 16)  # the default sizes, a names-like vocabulary
    T = model.block_size if spec.layout == "windows" else 16
    rows = 1024 if spec.layout == "windows" else 64  # ~1k targets either way
    idx = jax.random.randint(jax.random.PRNGKey(2), (rows, T), 0, 27)
    targets = jax.random.randint(
        jax.random.PRNGKey(3), (rows,) if spec.layout == "windows" else (rows, 16), 0, 27
    )
    loss = float(mean_nll(apply_train(model, init(model, idx), idx), targets))
    expected = math.log(27)  # every model but one starts near the uniform distribution
    if name == "bigram":  # the lecture's W = randn: logits ~ N(0, 1), E[logsumexp] by sampling
        z = np.random.default_rng(0).normal(size=(200_000, 27))
        expected = float(np.mean(np.log(np.exp(z).sum(axis=1))))
    assert abs(loss - expected) < 0.1, (name, loss, expected)


SEQUENCE_MODELS = [n for n in model_names() if registry()[n].layout == "sequences"]


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_sequence_models_are_causal(name):
    spec, model = tiny_model(name)
    idx = tokens(spec, jax.random.PRNGKey(4))
    variables = init(model, idx)
    t = 3
    changed = idx.at[:, t + 1 :].set((idx[:, t + 1 :] + 1) % V)
    before = model.apply(variables, idx, train=False)
    after = model.apply(variables, changed, train=False)
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[:, t + 1 :], before[:, t + 1 :], atol=1e-4)  # the test can fail


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_extra_padding_leaves_the_loss_unchanged(name):
    """The same words padded to a longer row (boundary tokens in X, IGNORE in Y) score the
    same; the model is built for the longer row length so both fit."""
    spec = registry()[name]
    vocab = Vocab.from_words(["abcdefghij"])
    words = ["abc", "j", "fedcba"]
    sizes = {k: v for k, v in TINY.get(name, {}).items() if k in spec.hyperparameters()}
    model = spec.build(model_config(name, **sizes), vocab.size, 12)
    X8, Y8 = sequences(words, vocab, 8)
    X12, Y12 = sequences(words, vocab, 12)
    variables = init(model, jnp.asarray(X12))

    def loss(X, Y):
        logits = model.apply(variables, jnp.asarray(X), train=False)
        return masked_nll(logits, jnp.asarray(Y))

    # the short rows, padded on the right to the model's length by hand
    X8p = np.pad(X8, ((0, 0), (0, 4)), constant_values=vocab.boundary_id)
    Y8p = np.pad(Y8, ((0, 0), (0, 4)), constant_values=IGNORE)
    (s12, c12), (s8, c8) = loss(X12, Y12), loss(X8p, Y8p)
    assert int(c12) == int(c8) == sum(len(w) + 1 for w in words)
    assert float(s12) == pytest.approx(float(s8), rel=1e-6)


def test_sequences_layout_is_makemores():
    vocab = Vocab.from_words(["emma"])  # a e m + boundary
    X, Y = sequences(["emma", "am"], vocab, 6)
    a, e, m, b = vocab.stoi["a"], vocab.stoi["e"], vocab.stoi["m"], vocab.boundary_id
    assert X.tolist() == [[b, e, m, m, a, b], [b, a, m, b, b, b]]
    assert Y.tolist() == [[e, m, m, a, b, -1], [a, m, b, -1, -1, -1]]


def test_masked_nll_matches_numpy_and_never_counts_ignore():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(3, 5))
    targets[0, 3:] = IGNORE
    targets[2, 1] = IGNORE
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = targets != IGNORE
    expected = -sum(log_probs[i, t, targets[i, t]] for i, t in zip(*np.nonzero(keep), strict=True))
    total, count = masked_nll(jnp.asarray(logits), jnp.asarray(targets))
    assert int(count) == keep.sum() and float(total) == pytest.approx(expected, rel=1e-5)
    # -1 does not wrap to the last class: making the last class likelier changes nothing
    boosted = logits.copy()
    boosted[~keep] = 0.0
    boosted[~keep, -1] = 50.0
    assert float(masked_nll(jnp.asarray(boosted), jnp.asarray(targets))[0]) == pytest.approx(
        expected, rel=1e-5
    )


def test_both_layouts_count_the_same_targets_and_give_the_same_bigram_loss(small_names):
    words = small_names.read_text().split()[:300]
    vocab = Vocab.from_words(words)
    log_probs_VxV = jax.nn.log_softmax(
        jax.random.normal(jax.random.PRNGKey(0), (vocab.size, vocab.size))
    )
    Xw, Yw = context_windows(words, vocab, 1)
    Xs, Ys = sequences(words, vocab, max(map(len, words)) + 1)
    # the bigram in each layout: the logits row of the current (last) character
    sum_w, count_w = masked_nll(log_probs_VxV[Xw[:, -1]], jnp.asarray(Yw))
    sum_s, count_s = masked_nll(log_probs_VxV[Xs], jnp.asarray(Ys))
    assert int(count_w) == int(count_s) == sum(len(w) + 1 for w in words)
    assert float(sum_w) == pytest.approx(float(sum_s), rel=1e-6)


def _train(name, data, workdir, steps, resume=False):
    config, config_name = tiny_config(
        name,
        data,
        num_steps=steps,
        steps_per_call=20,
        eval_every=60,
        checkpoint_every=20,
        lr_decay_steps=30,  # not num_steps // 2: the 40-step run must follow the 60-step one
        **TINY.get(name, {}),
    )
    return train_and_evaluate(config, config_name, workdir, resume=resume)


#: Every model in the heavy tier (the default run resumes an MLP in test_checkpoint.py)
#: (`.ci/run` runs it after the README's test command).
TRAINED_CONFIGS = [
    *(
        pytest.param(name, marks=pytest.mark.heavy)
        for name in ("mlp", "gru", "bigram", "mlp_manual", "rnn", "bow", "transformer", "wavenet")
    ),
]


@pytest.mark.parametrize("name", TRAINED_CONFIGS)
def test_every_model_trains_resumes_bit_identically_and_samples(name, tmp_path, small_names):
    straight = _train(name, small_names, tmp_path / "straight", 60)
    metrics = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    assert straight["loss"]["train"] < metrics[0]["loss"]  # below the first chunk's mean loss
    _train(name, small_names, tmp_path / "resumed", 40)
    resumed = _train(name, small_names, tmp_path / "resumed", 60, resume=True)
    assert resumed["loss"] == straight["loss"]
    a = ckpt.restore_state(tmp_path / "straight", 60)
    b = ckpt.restore_state(tmp_path / "resumed", 60)
    chex.assert_trees_all_equal(a["params"], b["params"])
    chex.assert_trees_all_equal(a["opt_state"], b["opt_state"])
    loaded = load_trained(tmp_path / "straight")

    def words(seed):
        return generate(
            loaded.model, loaded.variables, loaded.vocab, jax.random.PRNGKey(seed), 20,
            layout=loaded.spec.layout,
        input_len=input_length(loaded.config.model, loaded.seq_len), max_len=12, prefix="a",
        )  # fmt: skip

    assert words(0) == words(0) and words(0) != words(1)
    assert all(w.startswith("a") and len(w) <= 13 for w in words(0))
