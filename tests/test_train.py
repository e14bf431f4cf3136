import json

import chex
import jax
import numpy as np
import optax
import pytest
from conftest import tiny_config, tiny_setup

from jax_makemore import checkpoint as ckpt
from jax_makemore.train import chunk_ends, make_train_chunk, train_and_evaluate


def test_chunk_ends_cover_remainders_and_align_to_step_numbers():
    assert chunk_ends(0, 2500, (1000, 50_000, 50_000)) == [1000, 2000, 2500]
    assert chunk_ends(1000, 2500, (1000, 700, 5000)) == [1400, 2000, 2100, 2500]
    assert chunk_ends(5, 5, (3,)) == []


def test_count_bigram_run_writes_results_and_an_empty_metrics_log(tmp_path, small_names):
    config, name = tiny_config("bigram_counts", small_names)
    results = train_and_evaluate(config, name, tmp_path / "w")
    saved = json.loads((tmp_path / "w" / "results.json").read_text())
    assert set(saved) == {
        "config",
        "model",
        "num_params",
        "steps",
        "loss",
        "wall_seconds",
        "compile_seconds",
        "steps_per_sec",
        "words_seen",
        "chars_seen",
    }
    assert saved["model"] == "bigram_counts" and saved["steps"] == 0
    assert saved["words_seen"] == saved["chars_seen"] == 0  # fitted: no batch was trained on
    assert saved["loss"] == results["loss"] and set(saved["loss"]) == {"train", "val", "test"}
    assert 2.0 < saved["loss"]["val"] < 3.0
    assert isinstance(saved["num_params"], int) and saved["num_params"] == 27 * 27
    # fitted by counting: no chunk ran, so the metrics log exists and holds no line
    assert (tmp_path / "w" / "metrics.jsonl").read_text() == ""


def test_empty_splits_report_null(tmp_path, small_names):
    config, name = tiny_config(
        "bigram_counts", small_names, split_fractions="(1.0,0.0,0.0)", smoothing=0
    )
    results = train_and_evaluate(config, name, tmp_path / "w")
    assert results["loss"]["val"] is None and results["loss"]["test"] is None
    assert json.loads((tmp_path / "w" / "results.json").read_text())["loss"]["val"] is None


def test_neural_bigram_reaches_count_bigram_train_nll(tmp_path, small_names):
    counts, _ = tiny_config("bigram_counts", small_names, smoothing=0)
    neural, name = tiny_config("bigram", small_names, num_steps=400)
    count_loss = train_and_evaluate(counts, "bigram_counts", tmp_path / "c")["loss"]["train"]
    neural_loss = train_and_evaluate(neural, name, tmp_path / "n")["loss"]["train"]
    assert neural_loss >= count_loss - 1e-4  # nothing beats the maximum-likelihood table
    assert neural_loss - count_loss < 0.02


def test_mlp_learns_and_metrics_are_logged(tmp_path, small_names):
    config, name = tiny_config(
        "mlp",
        small_names,
        num_steps=1500,
        steps_per_call=500,
        eval_every=1000,
        checkpoint_every=1000,
    )
    results = train_and_evaluate(config, name, tmp_path / "w")
    lines = [
        json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in lines] == [500, 1000, 1500]
    assert "split_loss" in lines[1] and "split_loss" in lines[2] and "split_loss" not in lines[0]
    assert lines[-1]["split_loss"] == results["loss"]
    assert lines[0]["loss"] < 3.3 and results["loss"]["train"] < lines[0]["loss"]
    assert results["loss"]["train"] < 2.6
    assert ckpt.make_manager(tmp_path / "w").all_steps() == [1000, 1500]


@pytest.mark.heavy
def test_same_seed_gives_bit_identical_params_and_losses(tmp_path, small_names):
    def run(workdir, seed=0):
        config, name = tiny_config("mlp", small_names, num_steps=300, steps_per_call=128, seed=seed)
        results = train_and_evaluate(config, name, workdir)
        step = ckpt.restore_meta(workdir).step
        return results["loss"], ckpt.restore_state(workdir, step)

    loss_a, state_a = run(tmp_path / "a")
    loss_b, state_b = run(tmp_path / "b")
    assert loss_a == loss_b
    chex.assert_trees_all_equal(state_a["params"], state_b["params"])
    chex.assert_trees_all_equal(state_a["batch_stats"], state_b["batch_stats"])
    loss_c, state_c = run(tmp_path / "c", seed=1)
    assert loss_c != loss_a


def test_fused_chunk_equals_single_steps(small_names):
    """K steps in one lax.scan give the same state as K separate one-step calls."""
    config, _ = tiny_config("mlp", small_names)
    _, _, model, fresh, X, Y = tiny_setup(config)
    fused, (losses_fused, _) = make_train_chunk(model, batch_size=32, num_steps=20)(fresh(), X, Y)
    one = make_train_chunk(model, batch_size=32, num_steps=1)
    state, losses = fresh(), []
    for _ in range(20):
        state, (loss, _) = one(state, X, Y)
        losses.append(loss[0])
    assert int(fused.step) == int(state.step) == 20
    np.testing.assert_allclose(losses_fused, np.array(losses), rtol=1e-5)
    chex.assert_trees_all_close(fused.params, state.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(fused.batch_stats, state.batch_stats, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_batchnorm", [pytest.param(True, marks=pytest.mark.heavy), False])
def test_train_step_gradient_matches_unjitted_function(small_names, use_batchnorm):
    config, _ = tiny_config(
        "mlp", small_names, use_batchnorm=use_batchnorm, learning_rate=1.0, lr_decay_factor=1.0
    )
    _, _, model, fresh, X, Y = tiny_setup(config)
    state = fresh()
    params0, bs0 = jax.tree.map(
        jax.numpy.copy, (state.params, state.batch_stats)
    )  # state is donated
    new_state, _ = make_train_chunk(model, batch_size=32, num_steps=1)(state, X, Y)
    idx = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(1), 0), (32,), 0, X.shape[0])

    def loss(params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": bs0}, X[idx], train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, Y[idx]).mean()

    with jax.disable_jit():
        grads = jax.grad(loss)(params0)
    expected = jax.tree.map(lambda p, g: p - 1.0 * g, params0, grads)
    chex.assert_trees_all_close(new_state.params, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.heavy
def test_progress_bar_on_a_terminal(tmp_path):
    """On a terminal, stderr shows a tqdm bar with step, loss and steps/s."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from conftest import REPO, write_small_names

    data = write_small_names(tmp_path, 300)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24x100
    args = ["--config", "mlp", "--workdir", str(tmp_path / "w"), f"--config.data_path={data}"]
    args += ["--config.num_steps=400", "--config.steps_per_call=100", "--config.num_samples=0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jax_makemore.train", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert "400/400" in shown and "loss=" in shown and "steps_per_s=" in shown
    assert "\r" in shown  # redrawn in place, not printed line by line


@pytest.mark.heavy
def test_print_config_shows_the_resolved_config_and_help_names_the_key_form():
    from conftest import run_cli

    shown = run_cli("train", "--config", "mlp", "--config.model.n_hidden=64", "--print_config")
    assert shown.returncode == 0, shown.stderr
    assert "n_hidden: 64" in shown.stdout and "name: mlp" in shown.stdout
    assert "num_steps: 200000" in shown.stdout
    helped = run_cli("train", "--help")
    assert "--config.KEY=VALUE" in helped.stdout and "--config.model.KEY" in helped.stdout
    assert "--print_config" in helped.stdout and "base_config()" in helped.stdout


def test_run_keys_are_the_keys_a_run_starts_from(tmp_path, small_names):
    from jax_makemore.train import build_run, run_keys

    init_key, data_key, sample_key = run_keys(5)
    expected = jax.random.split(jax.random.PRNGKey(5), 3)
    for got, want in zip((init_key, data_key, sample_key), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    config, name = tiny_config("mlp", small_names, seed=5)
    r = build_run(config, name, tmp_path / "w")
    np.testing.assert_array_equal(r.state.data_key, data_key)
    np.testing.assert_array_equal(r.sample_key, sample_key)
    assert not np.array_equal(run_keys(6)[1], data_key)
