"""Which flags a checkpoint resumes with, and the dotted config keys they are compared by."""

from __future__ import annotations

import copy

import pytest

from jax_makemore.config import DATA_KEYS, base_config, flatten_config, get_value
from jax_makemore.errors import UserError
from jax_makemore.workdir import IDENTITY_KEYS, check_resumable


def test_identity_keys_are_the_data_keys_and_the_training_identity():
    assert set(DATA_KEYS) <= set(IDENTITY_KEYS)
    assert {"max_word_length", "seed", "packed", "pack_len"} <= set(IDENTITY_KEYS)
    assert "num_steps" not in IDENTITY_KEYS and "learning_rate" not in IDENTITY_KEYS


def test_resume_with_another_max_word_length_is_refused(tmp_path):
    saved = base_config("mlp")
    other = copy.deepcopy(saved)
    other.max_word_length = 12
    with pytest.raises(
        UserError, match="max_word_length=10000 but the flags ask for max_word_length=12"
    ):
        check_resumable(saved, other, tmp_path)


def test_resume_with_another_step_count_is_allowed(tmp_path):
    saved = base_config("mlp")
    longer = copy.deepcopy(saved)
    longer.num_steps = saved.num_steps * 2
    check_resumable(saved, longer, tmp_path)  # no error


def test_flatten_config_and_get_value_agree_on_every_key():
    config = base_config("mlp")
    config.split_fractions = [0.8, 0.1, 0.1]  # a list, as a config file may write it
    flat = flatten_config(config)
    assert flat["split_fractions"] == (0.8, 0.1, 0.1)
    assert flat["model.name"] == "mlp" and "model" not in flat
    assert all(get_value(config, k) == v for k, v in flat.items())
    assert get_value(config, "model.n_hidden") == config.model.n_hidden
    with pytest.raises(KeyError):
        get_value(config, "model.no_such_key")
