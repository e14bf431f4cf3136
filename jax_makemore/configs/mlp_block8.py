"""The notes' MLP with 8 characters of context, flat (the WaveNet lecture's first step: ~22k
parameters), trained like `wavenet`: 200,000 steps, SGD 0.1 then 0.01 from step 150,000."""

from jax_makemore.config import base_config


def get_config():
    config = base_config("mlp")
    config.model.block_size = 8
    config.lr_decay_steps = 150_000
    return config
