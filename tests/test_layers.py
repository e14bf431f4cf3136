import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jax_makemore.layers import BatchNorm, Dropout, kaiming_normal
from jax_makemore.models import transformer


def test_kaiming_normal_matches_variance_scaling_and_the_formula():
    key = jax.random.PRNGKey(0)
    shape = (30, 200)
    ours = kaiming_normal(5 / 3)(key, shape)
    library = jax.nn.initializers.variance_scaling((5 / 3) ** 2, "fan_in", "normal")(key, shape)
    chex.assert_trees_all_close(ours, library, rtol=1e-6)
    big = kaiming_normal(5 / 3)(key, (300, 2000))
    assert abs(float(big.std()) - (5 / 3) / np.sqrt(300)) < 0.005


def _init(module, x):
    return module.init(jax.random.PRNGKey(0), x, train=False)


def test_batchnorm_training_matches_the_numpy_formula():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 5)).astype(np.float32)
    bn = BatchNorm(momentum=0.1, eps=1e-5)
    variables = _init(bn, x)
    params = {"scale": jnp.arange(1, 6, dtype=jnp.float32), "bias": jnp.full((5,), 0.5)}
    y, updates = bn.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        x,
        train=True,
        mutable=["batch_stats"],
    )
    mean, var = x.mean(0), x.var(0)
    expected = (x - mean) / np.sqrt(var + 1e-5) * np.arange(1, 6) + 0.5
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 * 1.0 + 0.1 * var, rtol=1e-5)


def test_batchnorm_matches_flax_batchnorm_in_train_and_eval():
    rng = np.random.default_rng(1)
    ours, flax_bn = BatchNorm(momentum=0.001), nn.BatchNorm(momentum=0.999, epsilon=1e-5)
    x0 = jnp.asarray(rng.normal(size=(32, 8)), jnp.float32)
    v_ours = ours.init(jax.random.PRNGKey(0), x0, train=False)
    v_flax = flax_bn.init(jax.random.PRNGKey(0), x0, use_running_average=True)
    for step in range(5):
        x = jnp.asarray(rng.normal(loc=step, scale=1 + step, size=(32, 8)), jnp.float32)
        y_ours, up_ours = ours.apply(v_ours, x, train=True, mutable=["batch_stats"])
        y_flax, up_flax = flax_bn.apply(
            v_flax, x, use_running_average=False, mutable=["batch_stats"]
        )
        chex.assert_trees_all_close(y_ours, y_flax, atol=1e-5)
        v_ours = {"params": v_ours["params"], **up_ours}
        v_flax = {"params": v_flax["params"], **up_flax}
        chex.assert_trees_all_close(
            v_ours["batch_stats"]["var"], v_flax["batch_stats"]["var"], atol=1e-6
        )
    x = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    chex.assert_trees_all_close(
        ours.apply(v_ours, x, train=False),
        flax_bn.apply(v_flax, x, use_running_average=True),
        atol=1e-5,
    )


def test_batch_stats_unchanged_in_eval_mode():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 4)), jnp.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), x, train=False)
    variables = {
        "params": variables["params"],
        "batch_stats": {"mean": jnp.ones(4), "var": jnp.full(4, 2.0)},
    }
    _, updates = bn.apply(variables, x, train=False, mutable=["batch_stats"])
    chex.assert_trees_all_equal(updates["batch_stats"], variables["batch_stats"])


def test_batch_of_one_in_eval_mode_equals_its_row_in_a_larger_batch():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(10, 6)), jnp.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), x, train=False)
    variables = {
        "params": variables["params"],
        "batch_stats": {"mean": jnp.linspace(-1, 1, 6), "var": jnp.linspace(0.5, 2, 6)},
    }
    full = bn.apply(variables, x, train=False)
    one = bn.apply(variables, x[3:4], train=False)
    assert bool(jnp.all(jnp.isfinite(one)))
    chex.assert_trees_all_close(one[0], full[3], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Dropout: nn.Dropout's numbers, with a rate that may be traced

X_DROP = jax.random.normal(jax.random.PRNGKey(3), (4, 6, 16))
DROP_KEY = jax.random.PRNGKey(7)


def _dropout(layer, x, train, key=DROP_KEY):
    rngs = {"dropout": key} if key is not None else {}
    return layer.apply({}, x, deterministic=not train, rngs=rngs)


def _bits_equal(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dropout_equals_flax_dropout_bit_for_bit():
    for rate in (0.0, 0.1, 0.5, 1.0):
        for train in (True, False):
            ours = jax.jit(lambda x, k, r=rate, t=train: _dropout(Dropout(r), x, t, k))
            flax_ = jax.jit(lambda x, k, r=rate, t=train: _dropout(nn.Dropout(r), x, t, k))
            _bits_equal(ours(X_DROP, DROP_KEY), flax_(X_DROP, DROP_KEY))
            grad = jax.grad(lambda x, r=rate, t=train: _dropout(Dropout(r), x, t).sum())
            flax_grad = jax.grad(lambda x, r=rate, t=train: _dropout(nn.Dropout(r), x, t).sum())
            _bits_equal(grad(X_DROP), flax_grad(X_DROP))
    # rate 0, rate 1 and eval mode draw nothing: no 'dropout' rng needed, as in nn.Dropout
    _bits_equal(_dropout(Dropout(0.0), X_DROP, True, key=None), X_DROP)
    _bits_equal(_dropout(Dropout(0.5), X_DROP, False, key=None), X_DROP)
    _bits_equal(_dropout(Dropout(1.0), X_DROP, True, key=None), jnp.zeros_like(X_DROP))


@pytest.mark.heavy
def test_dropout_with_a_traced_rate_equals_each_concrete_rate():
    rates = (0.0, 0.1, 0.2, 0.5, 1.0)  # 1 - rate in float32 is float32(1 - rate) for these

    def run(rate, x, key):
        return _dropout(Dropout(rate), x, True, key)

    def grad(rate, x, key):
        return jax.grad(lambda x: (run(rate, x, key) * x).sum())(x)

    rates_M = jnp.asarray(rates, jnp.float32)
    outs_M = jax.jit(jax.vmap(run, in_axes=(0, None, None)))(rates_M, X_DROP, DROP_KEY)
    grads_M = jax.jit(jax.vmap(grad, in_axes=(0, None, None)))(rates_M, X_DROP, DROP_KEY)
    for i, rate in enumerate(rates):
        flax_ = lambda x, r=rate: _dropout(nn.Dropout(r), x, True)  # noqa: E731
        _bits_equal(outs_M[i], jax.jit(flax_)(X_DROP))
        _bits_equal(grads_M[i], jax.jit(jax.grad(lambda x, f=flax_: (f(x) * x).sum()))(X_DROP))
    assert bool(jnp.isfinite(grads_M).all())  # rate 1: zeros, no 0 / 0 in the gradient
    # for some rates 1 - rate rounds differently in float32: keep_prob 1 ulp off, not the mask
    traced = jax.jit(run)(jnp.float32(0.33), X_DROP, DROP_KEY)
    np.testing.assert_allclose(traced, _dropout(nn.Dropout(0.33), X_DROP, True), rtol=1e-6)


@pytest.mark.heavy
def test_transformer_dropout_keeps_flax_dropout_streams(monkeypatch):
    """layers.Dropout keeps nn.Dropout's submodule names, so a model's masks are unchanged;
    the model with its rate traced trains on the same numbers."""
    idx = jnp.asarray(np.random.default_rng(4).integers(0, 27, size=(3, 8)), jnp.int32)

    model = transformer.Transformer(27, 8, n_layer=1, n_head=2, n_embd=8, dropout=0.1)
    variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), idx, train=False))()

    def logits(variables, rate):
        train = model.clone(dropout=rate).apply
        return train(variables, idx, train=True, rngs={"dropout": DROP_KEY})

    ours = jax.jit(lambda v: logits(v, 0.1))(variables)
    traced = jax.jit(logits)(variables, jnp.float32(0.1))
    monkeypatch.setattr(transformer, "Dropout", nn.Dropout)
    flax_ = jax.jit(lambda v: logits(v, 0.1))(variables)
    _bits_equal(ours, flax_)
    _bits_equal(traced, flax_)
