"""Weight averaging (config key ema_decay): the average follows its formula, leaves training
unchanged, survives a resume bit for bit, and is what evaluate and sample use."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
from conftest import tiny_config, tiny_setup, write_small_names

from jax_makemore import checkpoint as ckpt
from jax_makemore.errors import UserError
from jax_makemore.evaluate import split_losses
from jax_makemore.optim import averaged_params
from jax_makemore.restore import load_trained
from jax_makemore.train import make_train_chunk, train_and_evaluate
from jax_makemore.workdir import read_jsonl

TINY = dict(n_hidden=16, n_embd=4, batch_size=16, steps_per_call=10, eval_every=40)


def test_the_average_follows_its_formula_and_leaves_training_unchanged(tmp_path):
    data = write_small_names(tmp_path)
    config, _ = tiny_config("mlp", data, ema_decay=0.9, **TINY)
    _, _, model, fresh, X, Y = tiny_setup(config)
    one = make_train_chunk(model, batch_size=16, num_steps=1)
    state = fresh()
    expected = jax.tree.map(np.array, state.params)
    for _ in range(5):
        state, _ = one(state, X, Y)
        expected = jax.tree.map(lambda a, p: 0.9 * a + 0.1 * np.asarray(p), expected, state.params)
    chex.assert_trees_all_close(averaged_params(state.opt_state), expected, rtol=1e-6, atol=1e-7)
    plain_config, _ = tiny_config("mlp", data, **TINY)  # no average: the same raw params
    _, _, plain_model, plain_fresh, _, _ = tiny_setup(plain_config)
    plain = plain_fresh()
    plain_one = make_train_chunk(plain_model, batch_size=16, num_steps=1)
    for _ in range(5):
        plain, _ = plain_one(plain, X, Y)
    assert averaged_params(plain.opt_state) is None
    chex.assert_trees_all_equal(plain.params, state.params)


@pytest.mark.heavy
def test_resume_keeps_the_average_bit_identical_and_commands_use_it(tmp_path):
    data = write_small_names(tmp_path)
    common = dict(num_steps=40, checkpoint_every=20, ema_decay=0.95, lr_decay_factor=1.0, **TINY)
    config, name = tiny_config("mlp", data, **common)
    straight = train_and_evaluate(config, name, tmp_path / "straight")
    config, name = tiny_config("mlp", data, **dict(common, num_steps=20))
    train_and_evaluate(config, name, tmp_path / "resumed")
    config, name = tiny_config("mlp", data, **common)
    resumed = train_and_evaluate(config, name, tmp_path / "resumed", resume=True)
    a = ckpt.restore_state(tmp_path / "straight", 40)
    b = ckpt.restore_state(tmp_path / "resumed", 40)
    chex.assert_trees_all_equal(averaged_params(a["opt_state"]), averaged_params(b["opt_state"]))
    assert resumed["loss_ema"] == straight["loss_ema"] != straight["loss"]
    loaded = load_trained(tmp_path / "straight")  # evaluate and sample read the average
    chex.assert_trees_all_equal(loaded.variables["params"], averaged_params(a["opt_state"]))
    assert split_losses(loaded) == pytest.approx(straight["loss_ema"], abs=1e-6)
    metrics = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    assert metrics[-1]["split_loss_ema"] == straight["loss_ema"]


def test_ema_decay_outside_0_1_is_refused():
    with pytest.raises(UserError, match="ema_decay=1.0 must be in"):
        tiny_config("mlp", ema_decay=1.0)
