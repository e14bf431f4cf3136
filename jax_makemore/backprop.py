"""Backprop ninja: the MLP with BatchNorm of the notes, differentiated by hand.

The forward pass is cut into the small steps of the lecture so that every step's local
derivative is one line, and `manual_backward` chains those lines back from the loss to every
intermediate and every parameter without `jax.grad`. The same derivative then collapses into
two fused formulas (`cross_entropy_backward`, and `layers.batchnorm_backward`, the one that
`layers.BatchNorm(fused_backward=True)` trains with) that `fused_backward` uses.

Shape letters: B batch, T block (context length), E embedding, H hidden, V vocab.
`SHAPES` lists every intermediate's shape in those letters.

Parameters (a dict, the lecture's names): C VxE, W1 (T*E)xH, b1 H, bngain H, bnbias H,
W2 HxV, b2 V. Statistics keep their reduced axis (1xH, Bx1) as the lecture's `keepdim=True`.

Variance convention: the lecture's BatchNorm divides the squared deviations by n - 1 (Bessel's
correction, `bessel=True`); `layers.BatchNorm`, flax and PyTorch's normalisation divide by n
(`bessel=False`). The two give different gradients, so every function here takes the
convention explicitly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jax_makemore.layers import batchnorm_backward

Params = dict[str, jax.Array]

#: Every intermediate of `forward` in the order it is computed, with its shape.
SHAPES: dict[str, str] = {
    "emb": "BxTxE",
    "embcat": "Bx(T*E)",
    "hprebn": "BxH",
    "bnmeani": "1xH",
    "bndiff": "BxH",
    "bndiff2": "BxH",
    "bnvar": "1xH",
    "bnvar_inv": "1xH",
    "bnraw": "BxH",
    "hpreact": "BxH",
    "h": "BxH",
    "logits": "BxV",
    "logit_maxes": "Bx1",
    "norm_logits": "BxV",
    "counts": "BxV",
    "counts_sum": "Bx1",
    "counts_sum_inv": "Bx1",
    "probs": "BxV",
    "logprobs": "BxV",
}
INTERMEDIATES: tuple[str, ...] = tuple(SHAPES)
PARAMS: tuple[str, ...] = ("C", "W1", "b1", "bngain", "bnbias", "W2", "b2")


def init_params(
    key: jax.Array,
    vocab_size: int = 27,
    block_size: int = 3,
    n_embd: int = 10,
    n_hidden: int = 64,
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """The lecture's initialisation. b1, b2, bngain and bnbias are deliberately small random
    numbers instead of 0 or 1, so that a wrong gradient cannot hide behind a zero or a one."""
    k = jax.random.split(key, 7)
    fan_in = n_embd * block_size

    def randn(i: int, *shape: int) -> jax.Array:
        return jax.random.normal(k[i], shape, dtype)

    return {
        "C": randn(0, vocab_size, n_embd),
        "W1": randn(1, fan_in, n_hidden) * (5 / 3) / math.sqrt(fan_in),
        "b1": randn(2, n_hidden) * 0.1,  # useless before BatchNorm, but its gradient exists
        "W2": randn(3, n_hidden, vocab_size) * 0.1,
        "b2": randn(4, vocab_size) * 0.1,
        "bngain": randn(5, n_hidden) * 0.1 + 1.0,
        "bnbias": randn(6, n_hidden) * 0.1,
    }


def forward(
    params: Params,
    X_BxT: jax.Array,
    Y_B: jax.Array,
    taps: dict[str, jax.Array] | None = None,
    *,
    bessel: bool = True,
    eps: float = 1e-5,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss and every intermediate (the keys of `SHAPES`), one small step at a time.

    `taps` optionally adds an array to an intermediate right after it is computed. Zero taps
    leave the forward unchanged; differentiating the loss w.r.t. them gives the gradient of the
    loss w.r.t. each intermediate through everything downstream of it, which is what
    `manual_backward` computes by hand.
    """
    taps = taps or {}
    out: dict[str, jax.Array] = {}

    def tap(name: str, value: jax.Array) -> jax.Array:
        if name in taps:
            value = value + taps[name]
        out[name] = value
        return value

    B, T = X_BxT.shape
    n = B
    emb_BxTxE = tap("emb", params["C"][X_BxT])
    embcat_BxTE = tap("embcat", emb_BxTxE.reshape(B, -1))
    hprebn_BxH = tap("hprebn", embcat_BxTE @ params["W1"] + params["b1"])
    bnmeani_1xH = tap("bnmeani", 1 / n * hprebn_BxH.sum(0, keepdims=True))
    bndiff_BxH = tap("bndiff", hprebn_BxH - bnmeani_1xH)
    bndiff2_BxH = tap("bndiff2", bndiff_BxH**2)
    dof = n - 1 if bessel else n
    bnvar_1xH = tap("bnvar", 1 / dof * bndiff2_BxH.sum(0, keepdims=True))
    # rsqrt(v) is (v)**-0.5, as in layers.BatchNorm
    bnvar_inv_1xH = tap("bnvar_inv", jax.lax.rsqrt(bnvar_1xH + eps))
    bnraw_BxH = tap("bnraw", bndiff_BxH * bnvar_inv_1xH)
    hpreact_BxH = tap("hpreact", params["bngain"] * bnraw_BxH + params["bnbias"])
    h_BxH = tap("h", jnp.tanh(hpreact_BxH))
    logits_BxV = tap("logits", h_BxH @ params["W2"] + params["b2"])
    # subtracting the row max changes nothing mathematically; it keeps exp from overflowing
    logit_maxes_Bx1 = tap("logit_maxes", logits_BxV.max(1, keepdims=True))
    norm_logits_BxV = tap("norm_logits", logits_BxV - logit_maxes_Bx1)
    counts_BxV = tap("counts", jnp.exp(norm_logits_BxV))
    counts_sum_Bx1 = tap("counts_sum", counts_BxV.sum(1, keepdims=True))
    counts_sum_inv_Bx1 = tap("counts_sum_inv", counts_sum_Bx1**-1)
    probs_BxV = tap("probs", counts_BxV * counts_sum_inv_Bx1)
    logprobs_BxV = tap("logprobs", jnp.log(probs_BxV))
    loss = -logprobs_BxV[jnp.arange(n), Y_B].mean()
    return loss, out


def _loss_backward(it: dict[str, jax.Array], Y_B: jax.Array) -> dict[str, jax.Array]:
    """The loss end of `manual_backward`: d loss / d x from the mean NLL back to the logits, for
    each intermediate of the hand-written softmax (logprobs, probs, counts, norm_logits, ...)."""
    n, V = it["logits"].shape
    # loss = -mean_b logprobs[b, Y_b]
    dlogprobs = jnp.zeros_like(it["logprobs"]).at[jnp.arange(n), Y_B].set(-1.0 / n)
    dprobs = (1.0 / it["probs"]) * dlogprobs
    dcounts_sum_inv = (it["counts"] * dprobs).sum(1, keepdims=True)
    dcounts_sum = -(it["counts_sum"] ** -2) * dcounts_sum_inv
    # counts feeds probs directly and through counts_sum
    dcounts = it["counts_sum_inv"] * dprobs + jnp.ones_like(it["counts"]) * dcounts_sum
    dnorm_logits = it["counts"] * dcounts
    dlogit_maxes = -dnorm_logits.sum(1, keepdims=True)  # ~0: the max does not change the loss
    # logits feed norm_logits directly and through the row max (a one-hot at the argmax)
    dlogits = dnorm_logits + jax.nn.one_hot(it["logits"].argmax(1), V) * dlogit_maxes
    return {
        "logits": dlogits,
        "logit_maxes": dlogit_maxes,
        "norm_logits": dnorm_logits,
        "counts": dcounts,
        "counts_sum": dcounts_sum,
        "counts_sum_inv": dcounts_sum_inv,
        "probs": dprobs,
        "logprobs": dlogprobs,
    }


def manual_backward(
    params: Params,
    intermediates: dict[str, jax.Array],
    X_BxT: jax.Array,
    Y_B: jax.Array,
    *,
    bessel: bool = True,
) -> dict[str, jax.Array]:
    """d loss / d x for every intermediate x of `forward` and every parameter, by hand.

    Each line is the local derivative of one forward step times the gradient flowing into it;
    a tensor used twice (bndiff, counts, logits) sums the gradients of both uses. Returns a dict
    keyed like `SHAPES` plus `PARAMS`.
    """
    it = intermediates
    n = it["logits"].shape[0]
    C, W1, W2, bngain = params["C"], params["W1"], params["W2"], params["bngain"]
    loss_side = _loss_backward(it, Y_B)
    dlogits = loss_side["logits"]
    dh = dlogits @ W2.T
    dW2 = it["h"].T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - it["h"] ** 2) * dh
    dbngain = (it["bnraw"] * dhpreact).sum(0)
    dbnbias = dhpreact.sum(0)
    dbnraw = bngain * dhpreact
    dbnvar_inv = (it["bndiff"] * dbnraw).sum(0, keepdims=True)
    # bnvar_inv = (bnvar + eps)**-0.5, so d/dbnvar = -0.5 * (bnvar + eps)**-1.5 = -0.5*bnvar_inv**3
    dbnvar = -0.5 * it["bnvar_inv"] ** 3 * dbnvar_inv
    dof = n - 1 if bessel else n
    dbndiff2 = 1.0 / dof * jnp.ones_like(it["bndiff2"]) * dbnvar
    # bndiff feeds bnraw directly and through bndiff2
    dbndiff = it["bnvar_inv"] * dbnraw + 2 * it["bndiff"] * dbndiff2
    dbnmeani = -dbndiff.sum(0, keepdims=True)
    # hprebn feeds bndiff directly and through the mean
    dhprebn = dbndiff + 1.0 / n * jnp.ones_like(it["hprebn"]) * dbnmeani
    dembcat = dhprebn @ W1.T
    dW1 = it["embcat"].T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.reshape(it["emb"].shape)
    # each row of C gets the sum of the gradients of every position that looked it up
    dC = jnp.zeros_like(C).at[X_BxT].add(demb)
    return {
        "emb": demb, "embcat": dembcat, "hprebn": dhprebn, "bnmeani": dbnmeani, "bndiff": dbndiff,
        "bndiff2": dbndiff2, "bnvar": dbnvar, "bnvar_inv": dbnvar_inv, "bnraw": dbnraw,
        "hpreact": dhpreact, "h": dh, **loss_side, "C": dC, "W1": dW1, "b1": db1,
        "bngain": dbngain, "bnbias": dbnbias, "W2": dW2, "b2": db2,
    }  # fmt: skip


def cross_entropy_backward(logits_BxV: jax.Array, Y_B: jax.Array) -> jax.Array:
    """d mean-cross-entropy / d logits in one formula: (softmax(logits) - one_hot(Y)) / B.

    Each row pulls down every logit by its probability and pushes up the correct one by 1; the
    row's pulls and pushes sum to zero.
    """
    B, V = logits_BxV.shape
    return (
        jax.nn.softmax(logits_BxV, axis=-1) - jax.nn.one_hot(Y_B, V, dtype=logits_BxV.dtype)
    ) / B


def fused_forward(
    params: Params, X_BxT: jax.Array, Y_B: jax.Array, *, bessel: bool = True, eps: float = 1e-5
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss and what `fused_backward` needs, with BatchNorm and cross entropy in few steps
    (the lecture's "putting it all together"). The cache also holds the batch mean and
    variance (`bnmean`, `bnvar`) for running statistics."""
    B = X_BxT.shape[0]
    emb_BxTxE = params["C"][X_BxT]
    embcat_BxTE = emb_BxTxE.reshape(B, -1)
    hprebn_BxH = embcat_BxTE @ params["W1"] + params["b1"]
    bnmean_1xH = hprebn_BxH.mean(0, keepdims=True)
    dof = B - 1 if bessel else B
    bnvar_1xH = ((hprebn_BxH - bnmean_1xH) ** 2).sum(0, keepdims=True) / dof
    bnvar_inv_1xH = jax.lax.rsqrt(bnvar_1xH + eps)
    bnraw_BxH = (hprebn_BxH - bnmean_1xH) * bnvar_inv_1xH
    h_BxH = jnp.tanh(params["bngain"] * bnraw_BxH + params["bnbias"])
    logits_BxV = h_BxH @ params["W2"] + params["b2"]
    logz_B = jax.nn.logsumexp(logits_BxV, axis=1)
    loss = (logz_B - logits_BxV[jnp.arange(B), Y_B]).mean()
    cache = {
        "emb": emb_BxTxE,
        "embcat": embcat_BxTE,
        "bnmean": bnmean_1xH,
        "bnvar": bnvar_1xH,
        "bnvar_inv": bnvar_inv_1xH,
        "bnraw": bnraw_BxH,
        "h": h_BxH,
        "logits": logits_BxV,
    }
    return loss, cache


def fused_backward(
    params: Params,
    cache: dict[str, jax.Array],
    X_BxT: jax.Array,
    Y_B: jax.Array,
    *,
    bessel: bool = True,
) -> Params:
    """The gradient of every parameter, with the fused cross-entropy and BatchNorm formulas
    and the matmul, tanh and embedding steps of `manual_backward`. `cache` is `fused_forward`'s
    (or `forward`'s intermediates, which hold the same keys)."""
    dlogits = cross_entropy_backward(cache["logits"], Y_B)
    dh = dlogits @ params["W2"].T
    dW2 = cache["h"].T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - cache["h"] ** 2) * dh
    dbngain = (cache["bnraw"] * dhpreact).sum(0)
    dbnbias = dhpreact.sum(0)
    dhprebn = batchnorm_backward(
        dhpreact, params["bngain"], cache["bnraw"], cache["bnvar_inv"], bessel=bessel
    )
    dembcat = dhprebn @ params["W1"].T
    dW1 = cache["embcat"].T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.reshape(cache["emb"].shape)
    dC = jnp.zeros_like(params["C"]).at[X_BxT].add(demb)
    return {
        "C": dC,
        "W1": dW1,
        "b1": db1,
        "bngain": dbngain,
        "bnbias": dbnbias,
        "W2": dW2,
        "b2": db2,
    }
