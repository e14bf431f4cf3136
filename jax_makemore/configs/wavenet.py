"""The WaveNet lecture's final model: 8 characters of context fused two at a time over three
levels (n_embd 24, n_hidden 128, ~76.6k parameters), BatchNorm over batch and time; 200,000
steps of batch 32, SGD at 0.1 then 0.01 from step 150,000."""

from jax_makemore.config import base_config


def get_config():
    config = base_config("wavenet")
    config.lr_decay_steps = 150_000
    return config
