"""The lecture's earlier MLP: same sizes as `mlp`, Kaiming init, a hidden bias and no BatchNorm."""

from jax_makemore.config import base_config


def get_config():
    config = base_config()
    config.model.use_batchnorm = False
    return config
