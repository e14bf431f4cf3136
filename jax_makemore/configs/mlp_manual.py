"""The `mlp` config trained on hand-written gradients (models/mlp_manual.py, backprop.py): the
lecture's final exercise. Same model, data, batches and SGD schedule as `mlp`; only the
gradient comes from `manual_backward` instead of `jax.grad`."""

from jax_makemore.config import base_config


def get_config():
    return base_config("mlp_manual")
