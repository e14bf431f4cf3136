"""Exact demonstrations: keepdim's row normalisation, the std of tanh(N(0, 1)), the gradient
of a bias placed before BatchNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from claims.helpers import BiasBatchNormMLP


def keepdim_tables(counts_VxV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, wrong) row normalisations of a count table: `counts / counts.sum(1, keepdims=True)`
    and `counts / counts.sum(1)`, whose (V,) sums broadcast as a row, so entry (i, j) is divided
    by row j's sum instead of row i's (NumPy, JAX and PyTorch broadcast alike)."""
    counts = np.asarray(counts_VxV, np.float64)
    return counts / counts.sum(1, keepdims=True), counts / counts.sum(1)


def tanh_std_exact(points: int = 200) -> float:
    """std of tanh(z), z ~ N(0, 1), by Gauss-Hermite quadrature (tanh is odd: the mean is 0)."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    return float(np.sqrt(np.sum(w * np.tanh(z) ** 2) / np.sum(w)))


def tanh_std_sampled(n: int = 10_000_000, seed: int = 0) -> float:
    """std of tanh of `n` draws of N(0, 1), in float32 as a network computes it."""
    return float(jnp.std(jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (n,)))))


def b1_gradient(X_BxT: jax.Array, Y_B: jax.Array, vocab_size: int, seed: int = 0) -> dict:
    """Gradients of `BiasBatchNormMLP` on one batch in float32, with a random non-zero b1:
    max |dL/db1|, the RMS of every other gradient entry, their ratio, and the largest change of
    the logits when b1 is shifted by 5 (BatchNorm subtracts any constant shift)."""
    model = BiasBatchNormMLP(vocab_size=vocab_size, block_size=X_BxT.shape[1])
    variables = model.init(jax.random.PRNGKey(seed), X_BxT, train=False)
    params = jax.tree.map(lambda p: p, variables["params"])
    b1 = jax.random.normal(jax.random.PRNGKey(seed + 1), params["hidden"]["bias"].shape)
    params["hidden"]["bias"] = b1

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, X_BxT, train=True, mutable=["batch_stats"]
        )
        return jnp.mean(
            jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, Y_B[:, None], 1)[:, 0]
        )

    grads = jax.grad(loss)(params)
    g_b1 = jnp.abs(grads["hidden"]["bias"]).max()
    others = [
        g
        for p, g in jax.tree_util.tree_leaves_with_path(grads)
        if "hidden" not in str(p) or "kernel" in str(p)
    ]
    rms = jnp.sqrt(jnp.mean(jnp.concatenate([jnp.ravel(g) ** 2 for g in others])))
    shifted = jax.tree.map(lambda p: p, params)
    shifted["hidden"]["bias"] = b1 + 5.0

    def logits(p):
        return model.apply({**variables, "params": p}, X_BxT, train=True, mutable=["batch_stats"])[
            0
        ]

    shift = jnp.abs(logits(shifted) - logits(params)).max()
    return {
        "max_abs_grad_b1": float(g_b1),
        "rms_other_grads": float(rms),
        "ratio": float(g_b1 / rms),
        "max_logit_change_b1_plus_5": float(shift),
    }
