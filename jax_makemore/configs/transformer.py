"""makemore.py's `--type transformer` with its defaults (models/transformer.py), trained as makemore.py trains
it: batches of 32 words, AdamW 5e-4. The step count stops near the validation minimum."""

from jax_makemore.config import base_config, makemore_training


def get_config():
    config = makemore_training(base_config("transformer"))
    config.num_steps = 7_500
    # whole words packed end to end in rows of 24; --config.packed=False: makemore's padded rows
    config.packed, config.pack_len = True, 24
    return config
