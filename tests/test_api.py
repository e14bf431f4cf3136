"""The Python API (`import jax_makemore as jm`): every exported name, checked against the
commands it stands beside (the same workdir, words, scores and losses) and against independent
computation; a model defined in this file trains, resumes, samples and evaluates like a
shipped one."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, run_cli
from flax import linen as nn

import jax_makemore as jm
from jax_makemore import checkpoint as ckpt
from jax_makemore.models import unregister_model

TINY = dict(num_steps=300, steps_per_call=100, eval_every=300, checkpoint_every=300)


class TinyWindowModel(nn.Module):
    """A model written outside the package: embed a window, one Dense layer to the logits."""

    vocab_size: int
    block_size: int = 2
    n_embd: int = 4

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        emb_BxTxE = nn.Embed(self.vocab_size, self.n_embd)(idx_BxT)
        return nn.Dense(self.vocab_size)(emb_BxTxE.reshape(idx_BxT.shape[0], -1))


OUTSIDE = jm.ModelSpec("test_api_tiny_window", TinyWindowModel, "windows")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small MLP trained through the API, and its workdir."""
    root = tmp_path_factory.mktemp("api")
    lines = jm.DEFAULT_DATA_PATH.read_text(encoding="utf-8").splitlines()[:1500]
    data = root / "names.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = jm.get_config("mlp", data_path=str(data), model={"n_hidden": 32}, **TINY)
    run = jm.train(config, workdir=root / "mlp", progress=False)
    return run, root / "mlp", data


def test_dir_shows_the_api_and_nothing_else():
    assert dir(jm) == sorted(jm.__all__)
    for name in jm.__all__:
        assert getattr(jm, name) is not None
    import jax_makemore.models  # noqa: F401  the submodules of the same names stay hidden
    import jax_makemore.train  # noqa: F401

    assert callable(jm.train) and callable(jm.models)
    assert jm.models() == sorted(jm.models()) and "mlp" in jm.models()
    assert "mlp" in jm.configs() and "transformer_tuned" in jm.configs()


def test_get_config_types_and_validates_python_values():
    config = jm.get_config("mlp", num_steps=20_000, learning_rate=1, model={"n_hidden": 100})
    assert (config.num_steps, config.model.n_hidden) == (20_000, 100)
    assert isinstance(config.learning_rate, float)
    gru = jm.get_config("mlp", model={"name": "gru", "n_embd": 32})
    assert gru.model.name == "gru" and gru.model.n_embd == 32 and "n_hidden" not in gru.model
    errors = {
        "num_steps": (dict(num_steps="lots"), "config key num_steps='lots': expected an integer"),
        "fraction": (dict(num_steps=1.5), "expected an integer"),
        "typo": (dict(num_step=5), "unknown config key 'num_step'; did you mean num_steps"),
        "model": (dict(model={"n_hiden": 3}), "did you mean model.n_hidden?"),
        "range": (dict(batch_size=0), "config key batch_size must be > 0, got 0"),
        "name": (dict(model={"name": "nope"}), "unknown model"),
    }
    for overrides, message in errors.values():
        with pytest.raises(jm.UserError, match=re.escape(message)):
            jm.get_config("mlp", **overrides)
    with pytest.raises(jm.UserError, match="unknown config 'nope'"):
        jm.get_config("nope")


def test_an_edited_config_is_validated_by_train(tmp_path):
    config = jm.get_config("mlp")
    config.model.n_hidden = -5
    with pytest.raises(jm.UserError, match="model.n_hidden must be > 0"):
        jm.train(config, workdir=tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()  # nothing written before the config is valid


def test_train_writes_the_commands_workdir_and_returns_its_results(trained):
    run, workdir, _ = trained
    assert run.results == json.loads((workdir / "results.json").read_text())
    assert run.results["steps"] == run.step == 300
    assert run.losses() == run.results["loss"]  # re-evaluated, equal to the file
    assert jm.load(workdir).losses() == run.results["loss"]
    assert run.num_params == run.results["num_params"]
    assert ckpt.has_checkpoint(workdir) and (workdir / "metrics.jsonl").is_file()


@pytest.mark.heavy
def test_a_workdir_with_a_checkpoint_needs_resume_or_overwrite(trained, tmp_path):
    import shutil

    run, trained_dir, data = trained
    workdir = tmp_path / "copy"
    shutil.copytree(trained_dir, workdir)
    config = jm.get_config("mlp", data_path=str(data), model={"n_hidden": 32}, **TINY)
    with pytest.raises(jm.UserError, match="use --resume to continue it or --overwrite"):
        jm.train(config, workdir=workdir, progress=False)
    longer = jm.train(config, workdir=workdir, resume=True, num_steps=400, progress=False)
    assert longer.step == 400


def test_sample_equals_the_sample_command_and_a_reload(trained):
    run, workdir, _ = trained
    kw = dict(seed=3, temperature=0.8, top_k=5, prefix="ma")
    words = run.sample(10, **kw)
    assert len(words) == 10 and all(w.startswith("ma") for w in words)
    assert jm.load(workdir).sample(10, **kw) == words
    cli = run_cli(
        "sample", "--workdir", str(workdir), "--num", "10", "--seed", "3",
        "--temperature", "0.8", "--top_k", "5", "--prefix", "ma",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == words
    assert run.sample(10, seed=4, prefix="ma") != run.sample(10, seed=3, prefix="ma")


@pytest.mark.heavy
def test_most_likely_equals_sample_top_and_the_scores(trained):
    run, workdir, _ = trained
    best = run.most_likely(5, prefix="a")
    cli = run_cli("sample", "--workdir", str(workdir), "--top", "5", "--prefix", "a")
    assert cli.returncode == 0, cli.stderr
    printed = [line.split("\t") for line in cli.stdout.splitlines()]
    assert [w for w, _ in best] == [w for w, _ in printed]
    assert [f"{nll:.4f}" for _, nll in best] == [n for _, n in printed]
    nlls = [nll for _, nll in best]
    assert nlls == sorted(nlls) and all(w.startswith("a") for w, _ in best)
    scored = [s["nll"] for s in run.score([w for w, _ in best])]
    assert nlls == pytest.approx(scored, rel=1e-5)
    new = run.most_likely(3, new=True)
    assert not {w for w, _ in new} & (run.trained.train_words | run.trained.heldout_words)


def test_sample_options_reach_the_sampler(trained):
    run, _, _ = trained
    words = run.sample(50, seed=1, new=True, unique=True, min_len=5)
    known = run.trained.train_words | run.trained.heldout_words
    assert len(set(words)) == 50 and not set(words) & known
    assert all(len(w) >= 5 for w in words)


def test_score_equals_evaluate_score(trained):
    run, workdir, _ = trained
    got = run.score(["emma", "zzzzq"])
    cli = run_cli("evaluate", "--workdir", str(workdir), "--score", "emma", "zzzzq")
    assert cli.returncode == 0, cli.stderr
    assert got == json.loads(cli.stdout)
    assert got[0]["nll"] < got[1]["nll"]  # a common name is likelier than a string of z's
    with pytest.raises(jm.UserError, match="not in the trained vocabulary"):
        run.score(["zoë"])


def test_next_char_probs_chain_to_the_words_score(trained):
    """p(word) from the chain of next-character distributions (the sampler's input state)
    equals exp(-NLL) from scoring (the evaluation's windows): two independent paths."""
    run, _, _ = trained
    probs = run.next_char_probs("em")
    assert set(probs) == set(run.vocab.itos)
    assert math.fsum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    for word in ("emma", "liam", "xqz"):
        nll = -sum(
            math.log(run.next_char_probs(word[:i])[c])
            for i, c in enumerate(word + run.vocab.boundary)
        )
        assert nll == pytest.approx(run.score([word])[0]["nll"], rel=1e-4)


def test_the_api_prints_nothing_on_stdout(tmp_path, capfd):
    jm.train("bigram_counts", workdir=tmp_path / "b", progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    jm.train("bigram", workdir=tmp_path / "n", num_steps=20, progress="auto")
    out, err = capfd.readouterr()
    assert out == "" and "step 20/20" in err  # progress on stderr only


def test_bad_input_raises_user_error_not_system_exit(tmp_path):
    with pytest.raises(jm.UserError, match="does not exist"):
        jm.train("mlp", workdir=tmp_path / "w", data_path=str(tmp_path / "none.txt"))
    with pytest.raises(jm.UserError, match="no checkpoint"):
        jm.load(tmp_path / "empty")
    with pytest.raises(jm.UserError, match="expected a config from get_config"):
        jm.train(42, workdir=tmp_path / "w")


def test_a_model_registered_from_outside_trains_resumes_samples_evaluates(tmp_path):
    jm.register_model(OUTSIDE)
    jm.register_model(OUTSIDE)  # the same spec twice: a no-op
    try:
        assert "test_api_tiny_window" in jm.models()
        lines = jm.DEFAULT_DATA_PATH.read_text(encoding="utf-8").splitlines()[:800]
        data = tmp_path / "names.txt"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = jm.get_config(
            "mlp", data_path=str(data), model={"name": "test_api_tiny_window", "n_embd": 6},
            num_steps=200, steps_per_call=50, eval_every=100, checkpoint_every=100,
            lr_decay_steps=150,  # the schedule of the first 100 steps does not depend on 200
        )  # fmt: skip
        straight = jm.train(config, workdir=tmp_path / "straight", progress=False)
        assert straight.results["model"] == "test_api_tiny_window"
        assert straight.results["loss"]["train"] < math.log(straight.vocab.size) - 0.3
        jm.train(config, workdir=tmp_path / "resumed", progress=False, num_steps=100)
        resumed = jm.train(config, workdir=tmp_path / "resumed", resume=True, progress=False)
        chex.assert_trees_all_equal(straight.variables, resumed.variables)  # bit-identical
        again = jm.load(tmp_path / "straight")
        assert again.losses() == straight.results["loss"]
        assert again.sample(8, seed=1) == straight.sample(8, seed=1)
        logits = again.model.apply(again.variables, jnp.zeros((3, 2), jnp.int32), train=False)
        chex.assert_shape(logits, (3, again.vocab.size))
        with pytest.raises(jm.UserError, match="registered already"):
            other = type("Other", (TinyWindowModel,), {})
            jm.register_model(jm.ModelSpec("test_api_tiny_window", other, "windows"))
        with pytest.raises(jm.UserError, match="needs a defaulted `block_size`"):
            jm.register_model(jm.ModelSpec("test_api_dense", nn.Dense, "windows"))
        with pytest.raises(jm.UserError, match="is a model of the package"):
            jm.register_model(jm.ModelSpec("mlp", TinyWindowModel, "windows"))
    finally:
        unregister_model("test_api_tiny_window")
    with pytest.raises(
        jm.UserError, match="holds model 'test_api_tiny_window', which is not registered"
    ):
        jm.load(tmp_path / "straight")
    cli = run_cli("sample", "--workdir", str(tmp_path / "straight"))  # another process
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "'test_api_tiny_window', which is not registered" in cli.stderr


def test_figures_are_the_plot_commands_pictures(trained, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from jax_makemore.plot import plot_run

    run, workdir, _ = trained
    figures = run.figures()
    written, _ = plot_run(workdir, tmp_path / "pictures")
    assert sorted(figures) == sorted(p.stem for p in written) == ["embedding", "loss"]
    assert all(isinstance(f, Figure) for f in figures.values())
    assert sorted(jm.figures(workdir)) == sorted(figures)
    assert isinstance(jm.compare_figure([workdir, workdir]), Figure)


@pytest.mark.heavy
def test_masses_and_ensembles_equal_evaluate(trained):
    run, workdir, _ = trained
    cli = run_cli("evaluate", "--workdir", str(workdir), "--mass")
    assert cli.returncode == 0, cli.stderr
    got, printed = run.masses(), json.loads(cli.stdout)
    assert got["train"] == printed["train"] and got["heldout"] == printed["heldout"]
    assert 0 < got["train"]["mass"] < 1 and got["new"] == pytest.approx(printed["new"])
    one = jm.ensemble_losses([workdir])
    assert one["ensemble"] == pytest.approx(run.losses(), rel=1e-6)  # a mixture of one


@pytest.mark.heavy
def test_sweep_trains_the_members_the_command_would(trained, tmp_path):
    _, _, data = trained
    config = jm.get_config("bigram", data_path=str(data), num_steps=30, eval_every=30)
    record = jm.sweep(config, {"learning_rate": [10.0, 50.0]}, tmp_path / "s")
    names = [m["name"] for m in record["members"]]
    assert names == ["learning_rate=10.0", "learning_rate=50.0"]
    assert json.loads((tmp_path / "s" / "sweep.json").read_text()) == record
    runs = [jm.load(tmp_path / "s" / m["workdir"]) for m in record["members"]]
    assert [r.config.learning_rate for r in runs] == [10.0, 50.0]
    assert runs[1].losses()["train"] < runs[0].losses()["train"]  # the faster rate, 30 steps
    with pytest.raises(jm.UserError, match="expected a number"):
        jm.sweep(config, {"learning_rate": ["fast"]}, tmp_path / "bad")


@pytest.mark.heavy
def test_lr_find_runs_the_configs_own_step():
    result = jm.lr_find("bigram", num_steps=40, repeats=2, min_lr=1.0, max_lr=100.0)
    assert result.losses_RxS.shape == (2, 40) and 1.0 <= result.suggested_lr <= 100.0
    assert np.isfinite(result.losses_RxS[:, 0]).all()
    assert result.losses_RxS[:, :20].mean() > result.losses_RxS[:, 20:].mean()  # it learns


def test_init_is_the_state_training_starts_from(trained, tmp_path):
    _, _, data = trained
    config = jm.get_config("mlp", data_path=str(data), model={"n_hidden": 32}, **TINY)
    fresh = jm.init(config)
    assert fresh.step == 0 and fresh.workdir is None and fresh.results is None
    one = jm.train(config, workdir=tmp_path / "one", num_steps=1, steps_per_call=1, progress=False)
    first_loss = one.metrics()[0]["loss"]  # the loss of step 1, on the initial params
    assert first_loss == pytest.approx(math.log(fresh.vocab.size), abs=0.3)  # Kaiming init
    params = jax.tree.leaves(fresh.variables["params"])
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(params, jax.tree.leaves(one.variables["params"]), strict=True)
    )
    with pytest.raises(jm.UserError, match="has no run directory"):
        fresh.metrics()


@pytest.mark.heavy
def test_metrics_and_diagnostics_read_the_run_directory(trained, tmp_path):
    run, workdir, data = trained
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert run.metrics() == records and records[-1]["step"] == run.step
    diag = jm.train(
        "mlp", workdir=tmp_path / "d", data_path=str(data), log_diagnostics=True,
        diagnostics_every=100, progress=False, **TINY,
    )  # fmt: skip
    assert [r["step"] for r in diag.diagnostics()] == [0, 100, 200]
    assert "tanh" in diag.diagnostics()[0]


def test_load_data_gives_the_split_training_sees(trained):
    run, _, data = trained
    ds = jm.load_data(run.config)
    assert ds.vocab == run.vocab and ds.path == data
    assert set(ds.words[0]) == run.trained.train_words
    X, Y = run.data().split("val")
    np.testing.assert_array_equal(X, ds.split("val")[0])
    assert run.label(["zzzzq", ds.words[0][0], ds.words[1][0]]) == [
        "new", "in train", "in val/test",
    ]  # fmt: skip


def readme_python_block() -> str:
    """The code block of the README's "From Python" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.heavy
def test_the_readme_from_python_block_runs_as_written(tmp_path):
    """The README's block in a plain `python` process, from an empty directory."""
    block = readme_python_block()
    assert "jm.train(" in block and "jm.load(" in block and "jm.register_model(" in block
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "mlp_small" / "results.json").is_file()
    assert result.stdout.strip(), "the block prints what it shows"
