"""The notes' main model: Bengio MLP, block 3, emb 10, hidden 200, Kaiming init + BatchNorm,
SGD at 0.1 decayed to 0.01 halfway through 200,000 steps of batch 32."""

from jax_makemore.config import base_config


def get_config():
    return base_config("mlp")  # the defaults of base_config and of models/mlp.py are this model
