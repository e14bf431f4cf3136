"""makemore.py's `--type gru` with its defaults (models/rnn.py), trained as makemore.py trains
it: batches of 32 words, AdamW 5e-4. The step count stops near the validation minimum."""

from jax_makemore.config import base_config, makemore_training


def get_config():
    config = makemore_training(base_config("gru"))
    config.num_steps = 30_000
    # whole words packed end to end in rows of 16; --config.packed=False: makemore's padded rows
    config.packed, config.pack_len = True, 16
    return config
