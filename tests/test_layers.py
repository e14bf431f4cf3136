import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore.layers import BatchNorm, kaiming_normal


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
