"""The hand-written backward pass of `jax_makemore.backprop` against JAX's autodiff.

Every manual gradient is compared with `jax.vjp` through the same forward, differentiated
w.r.t. additive zero "taps" on each intermediate, in float64 (`jax.enable_x64`), where both
sides agree to rounding; the tolerance `TOL` is far below the error of a wrong formula (one
test shows the wrong variance convention failing). `pytest tests/test_backprop.py -v -s`
prints one line per tensor like the lecture's `cmp`: exact, approximate, max abs difference.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_makemore import backprop, layers
from jax_makemore.layers import BatchNorm
from jax_makemore.models.mlp import MLP
from jax_makemore.models.mlp_manual import SPECS, loss_and_grads

TOL = 1e-10  # float64: both sides round differently only in the last bits
SIZES = {"B": 32, "T": 3, "E": 10, "H": 64, "V": 27}  # the lecture's exercise


def _lecture_batch(dtype):
    key_p, key_x, key_y = jax.random.split(jax.random.PRNGKey(42), 3)
    params = backprop.init_params(
        key_p, SIZES["V"], SIZES["T"], SIZES["E"], SIZES["H"], dtype=dtype
    )
    X = jax.random.randint(key_x, (SIZES["B"], SIZES["T"]), 0, SIZES["V"])
    Y = jax.random.randint(key_y, (SIZES["B"],), 0, SIZES["V"])
    return params, X, Y


def _autodiff(params, X, Y, bessel):
    """(loss, intermediates, d loss / d every intermediate and parameter) by jax.vjp."""
    loss, inter = backprop.forward(params, X, Y, bessel=bessel)
    taps = {k: jnp.zeros_like(v) for k, v in inter.items()}

    def loss_of(taps, params):
        return backprop.forward(params, X, Y, taps, bessel=bessel)[0]

    _, vjp = jax.vjp(loss_of, taps, params)
    dtaps, dparams = vjp(jnp.ones_like(loss))
    return loss, inter, {**dtaps, **dparams}


@pytest.fixture(scope="module")
def lecture():
    """float64 lecture batch: params, X, Y, intermediates, autodiff and manual gradients."""
    with jax.enable_x64(True):
        params, X, Y = _lecture_batch(jnp.float64)

        @jax.jit  # one compile instead of hundreds of eager ops
        def both(params, X, Y):
            loss, inter, auto = _autodiff(params, X, Y, bessel=True)
            return loss, inter, auto, backprop.manual_backward(params, inter, X, Y, bessel=True)

        loss, inter, auto, manual = both(params, X, Y)
        to_np = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
        return {
            "params": to_np(params),
            "X": np.asarray(X),
            "Y": np.asarray(Y),
            "loss": float(loss),
            "inter": to_np(inter),
            "auto": to_np(auto),
            "manual": to_np(manual),
        }


def _cmp(name: str, manual: np.ndarray, auto: np.ndarray) -> float:
    diff = float(np.max(np.abs(manual - auto)))
    exact = bool(np.array_equal(manual, auto))
    approx = bool(np.allclose(manual, auto, rtol=0, atol=TOL))
    print(f"\n{name:15s} | exact: {exact!s:5} | approximate: {approx!s:5} | maxdiff: {diff:.3e}")
    return diff


@pytest.mark.parametrize("name", backprop.INTERMEDIATES + backprop.PARAMS)
def test_manual_gradient_matches_autodiff(lecture, name):
    manual, auto = lecture["manual"][name], lecture["auto"][name]
    assert manual.shape == auto.shape
    diff = _cmp(name, manual, auto)
    assert diff <= TOL, f"d{name}: max abs difference {diff:.3e} > {TOL}"


def test_lecture_init_is_not_trivial_and_loss_is_near_uniform(lecture):
    p = lecture["params"]
    for name in ("b1", "b2", "bnbias"):
        assert np.abs(p[name]).min() > 0, name
    assert np.abs(p["bngain"] - 1).min() > 0
    assert abs(lecture["loss"] - np.log(SIZES["V"])) < 0.5


def test_every_intermediate_has_its_documented_shape(lecture):
    for name, letters in backprop.SHAPES.items():
        expected = tuple(eval(dim, {}, SIZES) for dim in letters.split("x"))  # noqa: S307
        assert lecture["inter"][name].shape == expected, name


def test_embedding_gradient_accumulates_repeated_rows(lecture):
    X = lecture["X"]
    assert len(np.unique(X)) < X.size  # some rows of C are looked up more than once
    demb = lecture["manual"]["emb"]
    expected = np.zeros_like(lecture["params"]["C"])
    for b, t in np.ndindex(X.shape):
        expected[X[b, t]] += demb[b, t]
    np.testing.assert_allclose(lecture["manual"]["C"], expected, rtol=0, atol=1e-15)


def test_fused_cross_entropy_backward_matches_autodiff(lecture):
    with jax.enable_x64(True):
        logits = jnp.asarray(lecture["inter"]["logits"])
        got = jax.jit(backprop.cross_entropy_backward)(logits, lecture["Y"])
        want = jax.jit(
            jax.grad(
                lambda z: optax.softmax_cross_entropy_with_integer_labels(z, lecture["Y"]).mean()
            )
        )(logits)
        chex.assert_trees_all_close(got, want, rtol=0, atol=TOL)
        chex.assert_trees_all_close(got, lecture["auto"]["logits"], rtol=0, atol=TOL)


@pytest.mark.parametrize("bessel", [True, False], ids=["bessel", "biased"])
def test_fused_batchnorm_backward_matches_autodiff(bessel):
    with jax.enable_x64(True):
        params, X, Y = _lecture_batch(jnp.float64)
        _, inter, auto = jax.jit(_autodiff, static_argnums=3)(params, X, Y, bessel)
        got = backprop.batchnorm_backward(
            auto["hpreact"], params["bngain"], inter["bnraw"], inter["bnvar_inv"], bessel=bessel
        )
        chex.assert_trees_all_close(got, auto["hprebn"], rtol=0, atol=TOL)


def test_wrong_variance_convention_gives_wrong_gradients(lecture):
    """The biased-variance backward against the Bessel forward: every gradient downstream of
    the variance is right, every one upstream is wrong by far more than TOL."""
    with jax.enable_x64(True):
        p = jax.tree.map(jnp.asarray, lecture["params"])
        inter = jax.tree.map(jnp.asarray, lecture["inter"])
        manual_backward = jax.jit(backprop.manual_backward, static_argnames="bessel")
        wrong = manual_backward(p, inter, lecture["X"], lecture["Y"], bessel=False)
        fused_wrong = jax.jit(backprop.batchnorm_backward, static_argnames="bessel")(
            jnp.asarray(lecture["auto"]["hpreact"]),
            p["bngain"],
            inter["bnraw"],
            inter["bnvar_inv"],
            bessel=False,
        )
    auto = lecture["auto"]
    for name in ("hpreact", "bnraw", "bnvar_inv", "bnvar"):
        assert np.max(np.abs(np.asarray(wrong[name]) - auto[name])) <= TOL, name
    for name in ("hprebn", "bndiff", "W1", "C"):
        assert np.max(np.abs(np.asarray(wrong[name]) - auto[name])) > 1e-5, name
    assert np.max(np.abs(np.asarray(fused_wrong) - auto["hprebn"])) > 1e-5


def test_fused_forward_and_backward_match_the_step_by_step_ones(lecture):
    with jax.enable_x64(True):
        p = jax.tree.map(jnp.asarray, lecture["params"])
        X, Y = lecture["X"], lecture["Y"]
        loss, cache = jax.jit(backprop.fused_forward, static_argnames="bessel")(
            p, X, Y, bessel=True
        )
        grads = jax.jit(backprop.fused_backward, static_argnames="bessel")(
            p, cache, X, Y, bessel=True
        )
    assert abs(float(loss) - lecture["loss"]) < TOL
    want = {k: lecture["manual"][k] for k in backprop.PARAMS}
    chex.assert_trees_all_close(grads, want, rtol=0, atol=TOL)


def _bn_reference(x, gain, bias, eps):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    return (x - mean) * jax.lax.rsqrt(var + eps) * gain + bias, mean, var


@pytest.mark.parametrize("shape", [(16, 8), (4, 5, 6)], ids=["BxC", "BxTxC"])
def test_batchnorm_custom_vjp_matches_autodiff(shape):
    """float32; tolerance 1e-5 (gradients are O(1), float32 rounding of the sums)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 7)
    C = shape[-1]
    x = jax.random.normal(keys[0], shape) * 2.0 + 3.0
    gain = 1.0 + 0.3 * jax.random.normal(keys[1], (C,))
    bias = 0.3 * jax.random.normal(keys[2], (C,))
    cotangents = (
        jax.random.normal(keys[3], shape),
        jax.random.normal(keys[4], (C,)),  # the statistics' cotangents too, for completeness
        jax.random.normal(keys[5], (C,)),
    )
    only_y = (cotangents[0], jnp.zeros(C), jnp.zeros(C))

    @jax.jit
    def outputs_and_grads(x, gain, bias):
        out = {}
        for name, fn in (("fused", layers.batchnorm_train), ("autodiff", _bn_reference)):
            y, vjp = jax.vjp(lambda *a, fn=fn: fn(*a, 1e-5), x, gain, bias)
            out[name] = (y, vjp(cotangents), vjp(only_y))
        return out

    out = outputs_and_grads(x, gain, bias)
    chex.assert_trees_all_close(out["fused"][0], out["autodiff"][0], rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(out["fused"][1:], out["autodiff"][1:], rtol=1e-5, atol=1e-5)


def test_batchnorm_layer_fused_backward_same_forward_stats_and_gradients():
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 8)) * 2.0 + 1.0
    plain, fused = BatchNorm(momentum=0.1), BatchNorm(momentum=0.1, fused_backward=True)
    variables = plain.init(jax.random.PRNGKey(0), x, train=False)
    params = {"scale": jnp.linspace(0.5, 1.5, 8), "bias": jnp.linspace(-0.2, 0.3, 8)}
    stats = {"mean": jnp.linspace(-1, 1, 8), "var": jnp.linspace(0.5, 2, 8)}
    variables = {"params": params, "batch_stats": stats}
    cot = jax.random.normal(jax.random.PRNGKey(2), x.shape)

    def run(module):
        def f(p, x):
            y, upd = module.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return (y * cot).sum(), (y, upd)

        grad_fn = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
        (_, (y, upd)), grads = grad_fn(params, x)
        return y, upd, grads

    y_p, upd_p, g_p = run(plain)
    y_f, upd_f, g_f = run(fused)
    chex.assert_trees_all_equal(y_f, y_p)
    chex.assert_trees_all_equal(upd_f, upd_p)
    chex.assert_trees_all_close(g_f, g_p, rtol=1e-5, atol=1e-5)
    x1 = x[:1]  # evaluation is untouched: running statistics only
    chex.assert_trees_all_equal(
        fused.apply(variables, x1, train=False), plain.apply(variables, x1, train=False)
    )


def test_batchnorm_fused_backward_rejects_other_reduce_axes():
    x = jnp.ones((4, 3, 2))
    with pytest.raises(ValueError, match="fused_backward"):
        BatchNorm(reduce_axes=(0,), fused_backward=True).init(jax.random.PRNGKey(0), x, False)
    BatchNorm(reduce_axes=(0, 1), fused_backward=True).init(jax.random.PRNGKey(0), x, False)


def _mlp_setup(**fields):
    module = MLP(vocab_size=27, **fields)
    kx, ky, kp, kn = jax.random.split(jax.random.PRNGKey(3), 4)
    X = jax.random.randint(kx, (32, module.block_size), 0, 27)
    Y = jax.random.randint(ky, (32,), 0, 27)

    @jax.jit  # eager init dispatches op by op: slow on a busy CPU
    def init(X):
        variables = module.init(kp, X, train=False)
        # move every parameter and statistic off its 0/1 init so no gradient hides behind it
        leaves, tree = jax.tree.flatten(variables)
        noise = jax.random.split(kn, len(leaves))
        leaves = [
            v + 0.1 * jax.random.normal(k, v.shape) for v, k in zip(leaves, noise, strict=True)
        ]
        variables = jax.tree.unflatten(tree, leaves)
        stats = variables["batch_stats"]["BatchNorm_0"]
        stats["var"] = jnp.abs(stats["var"])
        return variables

    variables = init(X)
    return module, variables["params"], variables["batch_stats"], X, Y


def _autodiff_mlp(module, params, batch_stats, X, Y):
    def loss_fn(p):
        logits, upd = module.apply(
            {"params": p, "batch_stats": batch_stats}, X, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean(), upd

    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, grads, upd["batch_stats"]


@pytest.mark.heavy
@jax.default_matmul_precision("float32")
def test_mlp_manual_matches_autodiff_of_the_flax_module_under_jit():
    """float32 at the default sizes (hidden 200), float32 matmuls (no TF32 on a GPU);
    tolerance atol 1e-7 + rtol 1e-5 on gradients of size ~1e-2: the manual and autodiff
    sums differ only in float32 rounding (~1e-8)."""
    module, params, batch_stats, X, Y = _mlp_setup()
    step = jax.jit(lambda p, s, x, y: loss_and_grads(module, p, s, x, y))
    loss, grads, new_stats = step(params, batch_stats, X, Y)
    autodiff = jax.jit(lambda p, s, x, y: _autodiff_mlp(module, p, s, x, y))
    want_loss, want_grads, want_stats = autodiff(params, batch_stats, X, Y)
    chex.assert_trees_all_close(loss, want_loss, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(grads, want_grads, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(new_stats, want_stats, rtol=1e-6, atol=1e-6)
    assert SPECS[0].loss_and_grads is loss_and_grads and SPECS[0].module is MLP


@jax.default_matmul_precision("float32")
def test_mlp_bn_fused_backward_gives_the_autodiff_gradients():
    module, params, batch_stats, X, Y = _mlp_setup(n_hidden=64)
    fused = module.clone(bn_fused_backward=True)
    loss, grads, stats = jax.jit(lambda p: _autodiff_mlp(module, p, batch_stats, X, Y))(params)
    loss_f, grads_f, stats_f = jax.jit(lambda p: _autodiff_mlp(fused, p, batch_stats, X, Y))(params)
    chex.assert_trees_all_close(loss_f, loss, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(grads_f, grads, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(stats_f, stats, rtol=1e-6, atol=1e-6)
