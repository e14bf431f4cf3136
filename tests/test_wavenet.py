import json
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jax_makemore.checkpoint import _with_defaults
from jax_makemore.config import base_config
from jax_makemore.errors import UserError
from jax_makemore.layers import BatchNorm
from jax_makemore.models import validate_model_config
from jax_makemore.models.wavenet import (
    SPECS,
    CausalPairConv,
    MaskedBatchNorm,
    WaveNet,
    WaveNetConv,
    flatten_consecutive,
    level_weights,
    validate,
)

V, E, H, BLOCK = 7, 4, 8, 8  # tiny sizes; boundary token = V - 1
TINY = dict(vocab_size=V, block_size=BLOCK, n_embd=E, n_hidden=H)
WORDS = [[0, 1], [2, 3, 4, 5, 0], [5], [1, 2, 3]]  # token ids, no boundary inside


def sequences(words, seq_len, b=V - 1):
    """X_NxL = [b] + ids + b padding: the sequences layout."""
    X = np.full((len(words), seq_len), b, np.int32)
    for n, ids in enumerate(words):
        X[n, 1 : len(ids) + 1] = ids
    return X


def windows_of_row(x_L, block_size, b=V - 1):
    """The window of every position t of a padded row: ([b] * block_size + row[1:])[t:t+T]."""
    padded = np.concatenate([np.full(block_size, b), x_L[1:], [b]]).astype(np.int32)
    return np.stack([padded[t : t + block_size] for t in range(len(x_L))])


def init(module, *args):
    return module.init(jax.random.PRNGKey(0), *args, train=False)


def apply(module, variables, *args, train, mutable=False):
    return module.apply(variables, *args, train=train, mutable=mutable)


class ShapeTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_window_and_conv_logits_shapes(self):
        x_BxT = jnp.zeros((3, BLOCK), jnp.int32)
        window = WaveNet(**TINY)
        v = init(window, x_BxT)
        fn = self.variant(lambda v, x: window.apply(v, x, train=False))
        chex.assert_shape(fn(v, x_BxT), (3, V))
        X_BxL = jnp.asarray(sequences(WORDS, seq_len=7))
        conv = WaveNetConv(seq_len=7, **TINY)
        fn = self.variant(lambda v, x: conv.apply(v, x, train=True, mutable=["batch_stats"])[0])
        logits = fn(v, X_BxL)
        chex.assert_shape(logits, (len(WORDS), 7, V))
        chex.assert_tree_all_finite(logits)


def test_batchnorm_on_3d_input_reduces_over_batch_and_time():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(5, 4, 3)).astype(np.float32)
    bn = BatchNorm(momentum=0.1)
    v = init(bn, x)
    chex.assert_shape((v["batch_stats"]["mean"], v["batch_stats"]["var"]), (3,))
    y, up = apply(bn, v, x, train=True, mutable=["batch_stats"])
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(up["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)

    # the lecture's bug: statistics per (time, channel)
    bug = BatchNorm(momentum=0.1, reduce_axes=(0,))
    v = init(bug, x)
    chex.assert_shape((v["batch_stats"]["mean"], v["batch_stats"]["var"]), (4, 3))
    chex.assert_shape(v["params"]["scale"], (3,))
    y, up = apply(bug, v, x, train=True, mutable=["batch_stats"])
    mean, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)


def test_bug_variant_keeps_per_position_stats_except_at_the_last_level():
    v = init(WaveNet(bn_over_time=False, **TINY), np.zeros((2, BLOCK), np.int32))
    shapes = {k: s["mean"].shape for k, s in v["batch_stats"].items()}
    assert shapes == {"bn_1": (4, H), "bn_2": (2, H), "bn_3": (H,)}


def test_flatten_consecutive_puts_the_earlier_position_first():
    x = np.arange(2 * 6 * 3).reshape(2, 6, 3)
    y = np.asarray(flatten_consecutive(jnp.asarray(x)))
    assert y.shape == (2, 3, 6)
    for b in range(2):
        for t in range(3):
            np.testing.assert_array_equal(y[b, t, :3], x[b, 2 * t])
            np.testing.assert_array_equal(y[b, t, 3:], x[b, 2 * t + 1])


def test_parameter_count_matches_the_lecture_and_both_forms_share_one_tree():
    x = np.zeros((32, 8), np.int32)  # the first-loss test's shape: the compiled ops are reused
    v = init(WaveNet(vocab_size=27), x)
    assert sum(p.size for p in jax.tree.leaves(v["params"])) == 76_579
    # same names, shapes and (from one key) values
    chex.assert_trees_all_equal(v, init(WaveNetConv(vocab_size=27, seq_len=8), x))
    # the lecture's output layer: randn / sqrt(fan_in) * 0.1
    assert abs(float(v["params"]["out"]["kernel"].std()) - 0.1 / math.sqrt(128)) < 0.001


def test_conv_form_in_eval_mode_equals_the_window_form_at_every_position():
    X_BxL = sequences(WORDS, seq_len=8)
    window, conv = WaveNet(**TINY), WaveNetConv(seq_len=8, **TINY)
    v = init(window, np.zeros((2, BLOCK), np.int32))
    rng = np.random.default_rng(0)  # running statistics away from their initial values
    stats = {
        k: {"mean": rng.normal(size=H), "var": rng.uniform(0.5, 2, H)} for k in v["batch_stats"]
    }
    v = {"params": v["params"], "batch_stats": jax.tree.map(jnp.float32, stats)}
    conv_BxLxV = apply(conv, v, X_BxL, train=False)
    for n, x_L in enumerate(X_BxL):
        window_LxV = apply(window, v, windows_of_row(x_L, BLOCK), train=False)
        np.testing.assert_allclose(conv_BxLxV[n], window_LxV, atol=1e-5)


def test_pair_conv_matmul_and_lax_conv_agree_with_explicit_pairs():
    x = np.random.default_rng(0).normal(size=(2, 9, 3)).astype(np.float32)
    v = CausalPairConv(5, 4).init(jax.random.PRNGKey(0), x)
    kernel = np.asarray(v["params"]["kernel"])
    expected = np.stack([np.concatenate([x[:, s], x[:, s + 4]], -1) @ kernel for s in range(5)], 1)
    for lax_conv in (False, True):
        y = CausalPairConv(5, 4).apply(v, x, lax_conv)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    conv = WaveNetConv(seq_len=7, **TINY)
    X = sequences(WORDS, seq_len=7)
    variables = init(conv, X)
    np.testing.assert_allclose(
        conv.apply(variables, X, train=False, lax_conv=True),
        conv.apply(variables, X, train=False),
        rtol=1e-5,
        atol=1e-5,
    )


def test_conv_form_is_causal():
    X = sequences(WORDS, seq_len=8)
    conv = WaveNetConv(seq_len=8, **TINY)
    v = init(conv, X)
    changed = X.copy()
    changed[:, 4:] = 2  # later tokens differ
    a, b = apply(conv, v, X, train=False), apply(conv, v, changed, train=False)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_conv_form_in_training_equals_the_window_form_on_all_real_windows():
    """Masked statistics: padding does not count, so the batch of words normalises exactly
    like the batch of their windows (logits and running-statistics updates)."""
    X_BxL = sequences(WORDS, seq_len=7)
    window, conv = WaveNet(**TINY), WaveNetConv(seq_len=7, **TINY)
    v = init(window, np.zeros((2, BLOCK), np.int32))
    conv_BxLxV, conv_up = apply(conv, v, X_BxL, train=True, mutable=["batch_stats"])
    real = [(n, t) for n, ids in enumerate(WORDS) for t in range(len(ids) + 1)]
    windows_NxT = np.stack([windows_of_row(X_BxL[n], BLOCK)[t] for n, t in real])
    window_NxV, window_up = apply(window, v, windows_NxT, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.stack([conv_BxLxV[n, t] for n, t in real]), window_NxV, atol=1e-5)
    chex.assert_trees_all_close(conv_up, window_up, atol=1e-6)


def test_level_weights_count_the_windows_that_contain_each_position():
    X_BxL = sequences(WORDS, seq_len=7)
    real_BxL = (np.arange(7) == 0) | (X_BxL != V - 1)
    weights = level_weights(jnp.asarray(real_BxL), BLOCK)
    for level, w_BxS in enumerate(weights, start=1):
        span = 2**level  # window position k of level `level` is conv index t + k * span
        expected = np.zeros((len(WORDS), 7 + BLOCK - span), np.float32)
        for n, t in zip(*np.nonzero(real_BxL), strict=True):
            for k in range(BLOCK // span):
                expected[n, t + k * span] += 1
        np.testing.assert_array_equal(w_BxS, expected)


def test_masked_batchnorm_statistics_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(3, 5, 4)).astype(np.float32)
    w = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], np.float32)
    x[w == 0] = 1e3  # padding values that must not leak into the statistics
    bn = MaskedBatchNorm(momentum=0.1)
    v = init(bn, x, w)
    v = {**v, "params": {"scale": jnp.arange(1.0, 5.0), "bias": jnp.full(4, 0.5)}}
    y, up = apply(bn, v, x, w, train=True, mutable=["batch_stats"])
    kept = x[w == 1]  # N x C, the real positions only
    mean, var = kept.mean(0), kept.var(0)
    expected = (x - mean) / np.sqrt(var + 1e-5) * np.arange(1, 5) + 0.5
    np.testing.assert_allclose(y[w == 1], expected[w == 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(up["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)
    # a weight counts a position that many times
    w2 = w.copy()
    w2[1, 0] = 3
    _, up2 = apply(bn, v, x, w2, train=True, mutable=["batch_stats"])
    repeated = np.concatenate([kept, x[1, 0][None], x[1, 0][None]])
    np.testing.assert_allclose(up2["batch_stats"]["mean"], 0.1 * repeated.mean(0), rtol=1e-5)


@pytest.mark.parametrize("block_size", [1, 6, 12])
def test_validate_refuses_a_block_size_that_is_not_a_power_of_two(block_size):
    config = ml_collections.ConfigDict({"name": "wavenet", "block_size": block_size})
    with pytest.raises(UserError, match=f"model.block_size={block_size} must be a power of two"):
        validate(config)
    validate(ml_collections.ConfigDict({"name": "wavenet", "block_size": 16}))


def test_specs_expose_the_hyperparameters():
    window, conv = SPECS
    assert (window.name, window.layout, conv.name, conv.layout) == (
        "wavenet",
        "windows",
        "wavenet_conv",
        "sequences",
    )
    params = window.hyperparameters()
    assert params["block_size"] == 8 and params["n_embd"] == 24 and params["n_hidden"] == 128
    assert params["bn_momentum"] == BatchNorm.momentum and params["out_scale"] == 0.1
    assert conv.takes_seq_len() and not window.takes_seq_len()
    assert set(conv.hyperparameters()) == set(params) - {"bn_over_time"}


def test_first_loss_is_about_log_vocab_size():
    model = WaveNet(vocab_size=27)
    x = np.random.default_rng(1).integers(0, 27, size=(32, 8), dtype=np.int32)
    y = np.random.default_rng(2).integers(0, 27, size=32)
    v = init(model, x)
    logits, _ = apply(model, v, x, train=True, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    assert abs(float(loss) - math.log(27)) < 0.1


def test_three_tanh_layers_are_sown_for_diagnostics():
    x = np.zeros((3, BLOCK), np.int32)
    model = WaveNet(**TINY)
    _, state = apply(model, init(model, x), x, train=True, mutable=["batch_stats", "intermediates"])
    h = {k: v[0].shape for k, v in state["intermediates"].items() if k.startswith("h_")}
    assert h == {"h_BxTxH_1": (3, 4, H), "h_BxTxH_2": (3, 2, H), "h_BxTxH_3": (3, 1, H)}
    conv = WaveNetConv(seq_len=7, **TINY)
    X = sequences(WORDS, seq_len=7)
    _, state = apply(conv, init(conv, X), X, train=True, mutable=["batch_stats", "intermediates"])
    h = {k: v[0].shape for k, v in state["intermediates"].items() if k.startswith("h_")}
    assert h == {"h_BxSxH_1": (4, 13, H), "h_BxSxH_2": (4, 11, H), "h_BxSxH_3": (4, 7, H)}


def test_a_checkpoint_config_that_stored_lax_conv_still_loads():
    """`lax_conv` was a hyper-parameter before it became a call-time choice: a checkpoint that
    stored it restores to a config without it, which today's model validates."""
    saved = json.loads(base_config("wavenet_conv").to_json())
    saved["model"]["lax_conv"] = True
    config = _with_defaults(saved)
    assert "lax_conv" not in config.model
    validate_model_config(config.model)
