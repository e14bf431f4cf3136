import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config, tiny_setup

from jax_makemore import checkpoint as ckpt
from jax_makemore import diagnostics
from jax_makemore.data import dataset_from_config
from jax_makemore.errors import UserError
from jax_makemore.train import make_train_chunk, train_and_evaluate
from jax_makemore.workdir import read_jsonl


def test_histogram_matches_numpy_including_edges_and_outliers():
    x = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    x[:3] = [-1.0, 1.0, 5.0]  # both edges (the right one closed) and one value outside
    for lo, hi, bins in ((-1.0, 1.0, 50), (float(x.min()), float(x.max()), 7)):
        got = diagnostics.histogram(jnp.asarray(x), jnp.float32(lo), jnp.float32(hi), bins)
        expected, _ = np.histogram(x, bins, (lo, hi))
        np.testing.assert_array_equal(np.asarray(got), expected)


def test_saturated_fraction_and_update_ratio_match_numpy():
    h = np.tanh(np.random.default_rng(1).normal(scale=2.0, size=(64, 20))).astype(np.float32)
    assert float(diagnostics.saturated_fraction(jnp.asarray(h))) == pytest.approx(
        np.mean(np.abs(h) > 0.97)
    )
    old = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
    new = old + 1e-3 * np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    expected = np.log10(np.std(new.astype(np.float64) - old) / np.std(old))
    assert float(diagnostics.update_ratio(jnp.asarray(old), jnp.asarray(new))) == pytest.approx(
        expected, abs=1e-3
    )


def _one_step(config, edit=lambda params: params):
    """One full-batch train step with diagnostics at step 0: (params before, data, diag row);
    `edit` changes the initial params."""
    _, _, model, fresh, X, Y = tiny_setup(config)
    state = fresh()
    state = state.replace(params=edit(state.params))
    params0 = jax.tree.map(np.array, state.params)  # the state is donated
    # full float32 matmuls, as NumPy does (a GPU would otherwise use TF32)
    with jax.default_matmul_precision("highest"):
        _, (losses, _, diag) = make_train_chunk(
            model, batch_size=32, num_steps=1, full_batch=True, measure_first=True
        )(state, X, Y)
    row = diagnostics.record(jax.device_get(diag), 0)
    assert row["step"] == 0 and losses.shape == (1,)
    return params0, np.asarray(X), np.asarray(Y), row


def test_neural_bigram_gradients_and_update_ratio_equal_numpy(small_names):
    lr = 0.5
    config, _ = tiny_config("bigram", small_names, learning_rate=lr, lr_decay_factor=1.0)
    params0, X, Y, row = _one_step(config)
    W = params0["W"].astype(np.float64)
    V = W.shape[0]
    # logits = one_hot(x) @ W; d mean-NLL / dW = one_hot(x)^T (softmax - one_hot(y)) / N
    xenc = np.eye(V)[X[:, -1]]
    logits = xenc @ W
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = xenc.T @ (p - np.eye(V)[Y]) / len(Y)
    assert row["grad"]["W"]["mean"] == pytest.approx(grad.mean(), abs=1e-7)
    assert row["grad"]["W"]["std"] == pytest.approx(grad.std(), rel=1e-4)
    assert row["grad"]["W"]["lo"] == pytest.approx(grad.min(), rel=1e-4)
    expected_ratio = np.log10(np.std(lr * grad) / np.std(W))
    assert row["update_ratio"]["W"] == pytest.approx(expected_ratio, abs=1e-3)
    assert sum(row["grad"]["W"]["hist"]) == V * V
    assert row["tanh"] == {}  # no tanh layer in a bigram


def _numpy_hidden(params, X, bn_eps):
    """The MLP's tanh layer in training mode (BatchNorm on the batch's own statistics, when the
    model has one), in float64 NumPy."""
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    emb = params["Embed_0"]["embedding"][np.asarray(X)].reshape(len(X), -1)
    pre = emb @ params["Dense_0"]["kernel"]
    if "BatchNorm_0" in params:
        mean, var = pre.mean(axis=0), pre.var(axis=0)
        bn = params["BatchNorm_0"]
        pre = (pre - mean) / np.sqrt(var + bn_eps) * bn["scale"] + bn["bias"]
    else:
        pre = pre + params["Dense_0"]["bias"]
    return np.tanh(pre)


@pytest.mark.parametrize("use_batchnorm", [True, False])
def test_mlp_tanh_saturation_equals_numpy_forward(small_names, use_batchnorm):
    # gain 4 (and a BatchNorm scale of 3) push many pre-activations past the threshold
    config, _ = tiny_config(
        "mlp", small_names, n_embd=4, n_hidden=16, kaiming_gain=4.0, use_batchnorm=use_batchnorm
    )

    def edit(params):
        if use_batchnorm:
            params["BatchNorm_0"]["scale"] = 3.0 * params["BatchNorm_0"]["scale"]
        return params

    params0, X, Y, row = _one_step(config, edit)
    h = _numpy_hidden(params0, X, config.model.bn_eps)
    stats = row["tanh"]["h_BxH"]
    n = h.size
    assert 0.05 < stats["saturated"] < 0.95
    # float32 rounding may move an entry across |h| = 0.97: allow a couple of entries
    assert abs(stats["saturated"] - np.mean(np.abs(h) > 0.97)) <= 2 / n
    assert stats["std"] == pytest.approx(h.std(), rel=1e-4)
    expected_hist, _ = np.histogram(h, diagnostics.NUM_BINS, (-1.0, 1.0))
    # entries within float error of a bin edge may land on either side (more of them on a GPU,
    # whose tanh differs from NumPy's in the last bits): allow 1 in 10,000
    assert np.abs(np.array(stats["hist"]) - expected_hist).sum() <= max(4, n // 10_000)
    assert set(row["update_ratio"]) == {"Embed_0/embedding", "Dense_0/kernel", "Dense_1/kernel"}


@pytest.mark.heavy
def test_training_logs_diagnostics_every_n_steps_without_changing_the_run(tmp_path, small_names):
    # checkpoints every 50 steps: the state the step-150 measurement started from is kept
    common = dict(num_steps=200, steps_per_call=50, eval_every=100, checkpoint_every=50)
    plain, name = tiny_config("mlp", small_names, **common)
    logged, _ = tiny_config(
        "mlp", small_names, log_diagnostics=True, diagnostics_every=50, **common
    )
    (tmp_path / "logged").mkdir()
    (tmp_path / "logged" / diagnostics.FILENAME).write_text('{"step": 7}\n')  # a stale run's
    a = train_and_evaluate(plain, name, tmp_path / "plain")
    b = train_and_evaluate(logged, name, tmp_path / "logged")
    assert not (tmp_path / "plain" / diagnostics.FILENAME).exists()
    rows = read_jsonl(tmp_path / "logged" / diagnostics.FILENAME)
    assert [r["step"] for r in rows] == [0, 50, 100, 150]
    # the step-150 row measured that step's batch: the batch drawn from the checkpointed state
    # (fold_in(data_key, step), as a resumed run draws it) and its tanh layer in NumPy
    state = ckpt.restore_state(tmp_path / "logged", 150)
    X, _ = dataset_from_config(logged).split("train")
    key = jax.random.fold_in(state["data_key"], 150)
    batch = np.asarray(X)[np.asarray(jax.random.randint(key, (logged.batch_size,), 0, len(X)))]
    h = _numpy_hidden(state["params"], batch, logged.model.bn_eps)
    stats = rows[-1]["tanh"]["h_BxH"]
    assert np.mean(np.abs(h) > 0.97) > 0.005  # something to count
    # float32 rounding may move an entry across |h| = 0.97: allow a couple of entries
    assert abs(stats["saturated"] - np.mean(np.abs(h) > 0.97)) <= 2 / h.size
    assert stats["mean"] == pytest.approx(h.mean(), abs=1e-4)
    assert all(-8 < r["update_ratio"]["Dense_0/kernel"] < 0 for r in rows)

    def losses(workdir):
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    np.testing.assert_allclose(losses(tmp_path / "logged"), losses(tmp_path / "plain"), rtol=1e-5)
    assert b["loss"]["val"] == pytest.approx(a["loss"]["val"], rel=1e-5)


def test_diagnostics_every_must_be_positive(small_names):
    config, _ = tiny_config("mlp", small_names, log_diagnostics=True, diagnostics_every=0)
    with pytest.raises(UserError, match="diagnostics_every must be > 0"):
        diagnostics.every_from_config(config)
    config.log_diagnostics = False
    assert diagnostics.every_from_config(config) == 0


def test_plain_chunk_has_no_diagnostics_and_measured_chunk_measures_its_first_step(small_names):
    config, _ = tiny_config("mlp", small_names, n_hidden=8)
    _, _, model, fresh, X, Y = tiny_setup(config)
    plain = make_train_chunk(model, batch_size=32, num_steps=5)
    measured = make_train_chunk(model, batch_size=32, num_steps=5, measure_first=True)
    # no branch in either; only the measured chunk has the histograms' scatter-adds
    plain_hlo = plain.lower(fresh(), X, Y).as_text()
    measured_hlo = measured.lower(fresh(), X, Y).as_text()
    assert "stablehlo.case" not in plain_hlo and "stablehlo.case" not in measured_hlo
    assert plain_hlo.count("scatter") < measured_hlo.count("scatter")
    state_a, (losses_a, _) = plain(fresh(), X, Y)
    state_b, (losses_b, _, diag) = measured(fresh(), X, Y)
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-6)
    assert int(state_b.step) == 5 and diag["tanh"]["h_BxH"]["hist"].shape == (50,)
