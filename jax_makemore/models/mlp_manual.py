"""The notes' MLP trained with a hand-written backward pass (the backprop-ninja lecture).

Same module and parameter tree as `mlp` (so evaluation, sampling and checkpoints treat it like
`mlp`), but the train step takes its loss and gradients from `loss_and_grads` here, which runs
the forward by hand and the fused backward of `jax_makemore.backprop` instead of `jax.grad`.
The BatchNorm uses the biased variance and the eps of `layers.BatchNorm`, and the running
statistics move by the module's `bn_momentum`, so the Flax module evaluated with those running
statistics is the model that was trained. `bn_fused_backward` has no effect here: the whole
backward is by hand already.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jax_makemore import backprop
from jax_makemore.errors import UserError
from jax_makemore.models.base import ModelSpec
from jax_makemore.models.mlp import MLP


def validate(model: ml_collections.ConfigDict) -> None:
    if not model.use_batchnorm:
        raise UserError(
            "config key model.use_batchnorm: mlp_manual differentiates the BatchNorm MLP by "
            "hand and needs use_batchnorm=True (use model.name=mlp without BatchNorm)"
        )


def loss_and_grads(
    module: MLP,
    params: dict[str, Any],
    batch_stats: dict[str, Any],
    X_BxT: jax.Array,
    Y_B: jax.Array,
) -> tuple[jax.Array, dict[str, Any], dict[str, Any]]:
    """(mean cross-entropy, d loss / d params with the tree of `params`, updated batch_stats)
    for one training batch, without autodiff. Pure and jit-compatible."""
    if not module.use_batchnorm:
        raise ValueError("mlp_manual needs use_batchnorm=True")
    kernel_1 = params["Dense_0"]["kernel"]
    p = {
        "C": params["Embed_0"]["embedding"],
        "W1": kernel_1,
        "b1": jnp.zeros(kernel_1.shape[-1], kernel_1.dtype),  # no hidden bias before BatchNorm
        "bngain": params["BatchNorm_0"]["scale"],
        "bnbias": params["BatchNorm_0"]["bias"],
        "W2": params["Dense_1"]["kernel"],
        "b2": params["Dense_1"]["bias"],
    }
    loss, cache = backprop.fused_forward(p, X_BxT, Y_B, bessel=False, eps=module.bn_eps)
    g = backprop.fused_backward(p, cache, X_BxT, Y_B, bessel=False)
    grads = {
        "Embed_0": {"embedding": g["C"]},
        "Dense_0": {"kernel": g["W1"]},
        "BatchNorm_0": {"scale": g["bngain"], "bias": g["bnbias"]},
        "Dense_1": {"kernel": g["W2"], "bias": g["b2"]},
    }
    m = module.bn_momentum
    stats = batch_stats["BatchNorm_0"]
    new_batch_stats = {
        "BatchNorm_0": {
            "mean": (1 - m) * stats["mean"] + m * cache["bnmean"][0],
            "var": (1 - m) * stats["var"] + m * cache["bnvar"][0],
        }
    }
    return loss, grads, new_batch_stats


SPECS = (ModelSpec("mlp_manual", MLP, "windows", validate=validate, loss_and_grads=loss_and_grads),)
