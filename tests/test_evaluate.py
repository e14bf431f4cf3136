"""jax_makemore.evaluate: split losses equal to results.json, scored words and files, and the
ensemble of several runs (a sweep's seeds) against an independent NumPy mixture."""

import contextlib
import importlib
import io
import json

import jax
import numpy as np
import pytest
from conftest import run_cli, tiny_config, write_small_names

from jax_makemore import errors, evaluate
from jax_makemore.data import IGNORE, dataset_from_config
from jax_makemore.errors import UserError
from jax_makemore.restore import load_trained
from jax_makemore.train import train_and_evaluate

#: the sweep module (`jax_makemore.sweep`, the attribute of the package, is the API function)
sweep = importlib.import_module("jax_makemore.sweep")

#: A tiny RNN (sequences layout: padded rows with IGNORE targets), evaluated in batches of 64
#: rows so a split spans several batches, the last one padded.
TINY_RNN = dict(
    n_embd=8, n_embd2=8, batch_size=16, num_steps=60, steps_per_call=60, eval_every=60,
    checkpoint_every=60, learning_rate=0.01, eval_batch_size=64, tensorboard=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_small_names(root, 1500)
    # from another directory, with a relative workdir: the default data and configs still resolve
    result = run_cli(
        "train",
        "--config",
        "mlp",
        "--workdir",
        "w",
        f"--config.data_path={data}",
        "--config.num_steps=600",
        "--config.steps_per_call=300",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    assert "mlp: 600 steps" in result.stdout
    # stderr is not a terminal here: plain progress lines instead of a bar
    assert "step 600/600  loss " in result.stderr and " steps/s" in result.stderr
    assert "\r" not in result.stderr
    assert (
        sum(
            line.endswith(("new", "in train", "in val/test")) for line in result.stdout.splitlines()
        )
        == 10
    )
    return root / "w"


def test_split_losses_equal_results_json(workdir):
    result = run_cli("evaluate", "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((workdir / "results.json").read_text())["loss"]
    only_val = json.loads(run_cli("evaluate", "--workdir", str(workdir), "--split", "val").stdout)
    assert list(only_val) == ["val"]


@pytest.mark.heavy
def test_score_words_and_other_files(workdir, tmp_path):
    result = run_cli("evaluate", "--workdir", str(workdir), "--score", "emma", "xqzzj")
    assert result.returncode == 0, result.stderr
    emma, odd = json.loads(result.stdout)
    assert emma["word"] == "emma" and emma["nll_per_char"] == pytest.approx(emma["nll"] / 5)
    assert emma["nll_per_char"] < odd["nll_per_char"]

    other = tmp_path / "other.txt"
    other.write_text("anna\nbob\n")
    scored = json.loads(run_cli("evaluate", "--workdir", str(workdir), "--data", str(other)).stdout)
    total = json.loads(
        run_cli("evaluate", "--workdir", str(workdir), "--score", "anna", "bob").stdout
    )
    assert scored["loss"] == pytest.approx(sum(s["nll"] for s in total) / 9, rel=1e-5)

    bad = run_cli("evaluate", "--workdir", str(workdir), "--score", "zoë")
    assert (
        bad.returncode == 2
        and "Traceback" not in bad.stderr
        and "'zoë' has characters not in the trained vocabulary: 'ë'" in bad.stderr
    )


def test_word_nlls_in_chunks_equal_numpy_over_the_windows(workdir):
    """Chunked word NLLs (chunks of 7 words: several chunks, each padded) against float64
    NumPy log-softmax of `model.apply` on each word's own windows."""
    loaded = load_trained(workdir)
    words = sorted(loaded.train_words)[:23]
    got = evaluate.word_nlls(loaded, words, chunk=7)
    for word, nll in zip(words, got, strict=True):
        X, Y = evaluate.encode(loaded, [word])
        z = np.asarray(loaded.model.apply(loaded.variables, X, train=False), np.float64)
        log_p = z - z.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        assert nll == pytest.approx(-log_p[np.arange(len(Y)), Y].sum(), rel=1e-5)


@pytest.mark.parametrize("run", ["mlp", pytest.param("rnn", marks=pytest.mark.heavy)])
def test_split_masses_are_the_expected_shares_of_samples(run, workdir, seed_sweep):
    """The mass on the training (held-out) words is the chance that one sample is a training
    (held-out) word: 8,000 samples land within 4 binomial standard deviations of it, for a
    windows model and for a sequence model; the preference is the per-word ratio of the two
    masses."""
    from jax_makemore.models import input_length
    from jax_makemore.sample import default_max_len, generate, label_words

    loaded = load_trained(workdir if run == "mlp" else seed_sweep[1][0])
    masses = evaluate.split_masses(loaded)
    num = 8000
    words = generate(
        loaded.model, loaded.variables, loaded.vocab, jax.random.PRNGKey(3), num,
        layout=loaded.spec.layout, input_len=input_length(loaded.config.model, loaded.seq_len),
        max_len=default_max_len(loaded.seq_len - 1),
    )  # fmt: skip
    labels = label_words(words, loaded.train_words, loaded.heldout_words)
    tested = 0
    for label, part in (("in train", "train"), ("in val/test", "heldout")):
        p = masses[part]["mass"]
        if p * num > 20:  # a share the samples can test (the tiny RNN's held-out one is not)
            tested += 1
            assert abs(labels.count(label) / num - p) < 4 * (p * (1 - p) / num) ** 0.5, label
    assert tested == (2 if run == "mlp" else 1)
    assert masses["new"] == pytest.approx(1 - masses["train"]["mass"] - masses["heldout"]["mass"])
    n_train, n_heldout = masses["train"]["words"], masses["heldout"]["words"]
    assert n_train == len(loaded.train_words) and n_train + n_heldout == 1500
    assert masses["preference"] == pytest.approx(
        masses["train"]["mass"] / n_train / (masses["heldout"]["mass"] / n_heldout)
    )


@pytest.mark.heavy
def test_mass_on_the_command_line(workdir):
    result = run_cli("evaluate", "--workdir", str(workdir), "--mass")
    assert result.returncode == 0, result.stderr
    masses = json.loads(result.stdout)
    direct = evaluate.split_masses(load_trained(workdir))
    for part in ("train", "heldout"):
        assert masses[part]["words"] == direct[part]["words"]
        assert masses[part]["mass"] == pytest.approx(direct[part]["mass"])
    assert masses["preference"] == pytest.approx(direct["preference"])
    both = run_cli("evaluate", "--ensemble", str(workdir), "--mass")
    assert both.returncode == 2 and "not an --ensemble" in both.stderr


# ---------------------------------------------------------------------------------------------
# --ensemble


@pytest.fixture(scope="module")
def seed_sweep(workdir):
    """A two-seed sweep of the tiny RNN on the data of `workdir`: (sweep dir, its member dirs)."""
    root, data = workdir.parent, workdir.parent / "small_names.txt"
    flags = [
        f"--config.{'model.' if k.startswith('n_embd') else ''}{k}={v}" for k, v in TINY_RNN.items()
    ]
    argv = ["--config", "rnn", "--workdir", str(root / "s"), f"--config.data_path={data}"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.main([*argv, *flags, "--config.num_samples=0", "--sweep.seed=0,1"]) == 0
    record = json.loads((root / "s" / sweep.SWEEP_FILE).read_text())
    return root / "s", [root / "s" / m["workdir"] for m in record["members"]]


def numpy_mixture(members, split):
    """(-log mean_m softmax(logits_m)[y], mean of the members' own NLLs, NLL of the mean logits)
    over the counted targets, in float64 NumPy from each restored member's `model.apply`."""
    probs, logits = [], []
    for m in members:
        X, Y = dataset_from_config(m.config, vocab=m.vocab, seq_len=m.seq_len).split(split)
        z = np.asarray(m.model.apply(m.variables, X, train=False), np.float64)
        logits.append(z)
        probs.append(np.exp(z - z.max(-1, keepdims=True)))
        probs[-1] /= probs[-1].sum(-1, keepdims=True)
    counted = Y != IGNORE
    assert not counted.all()  # padded rows: the masking is exercised
    y = np.where(counted, Y, 0)[..., None]

    def nll(p):
        return float(-np.log(np.take_along_axis(p, y, -1)[..., 0])[counted].mean())

    z = np.mean(logits, axis=0)
    p_mean_logits = np.exp(z - z.max(-1, keepdims=True))
    p_mean_logits /= p_mean_logits.sum(-1, keepdims=True)
    return nll(np.mean(probs, axis=0)), float(np.mean([nll(p) for p in probs])), nll(p_mean_logits)


@pytest.fixture(scope="module")
def two_seeds(seed_sweep):
    """`ensemble_losses` of the sweep's two members, listed one by one."""
    return evaluate.ensemble_losses(seed_sweep[1], ("val", "test"))


@pytest.mark.heavy
def test_ensemble_of_one_is_the_single_model(workdir):
    result = run_cli("evaluate", "--ensemble", str(workdir))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    single = json.loads((workdir / "results.json").read_text())["loss"]
    assert out["members"] == [str(workdir)] and list(out["single"]) == [str(workdir)]
    for split, loss in single.items():
        assert out["ensemble"][split] == pytest.approx(loss, abs=1e-6)
        assert out["single"][str(workdir)][split] == pytest.approx(loss, abs=1e-6)
        assert out["single_mean"][split] == pytest.approx(loss, abs=1e-6)


def test_ensemble_equals_a_numpy_mixture_and_beats_its_members(seed_sweep, two_seeds):
    members, out = seed_sweep[1], two_seeds
    restored = [load_trained(d) for d in members]
    for split in ("val", "test"):
        mixture, mean_single, mean_logits = numpy_mixture(restored, split)
        assert out["ensemble"][split] == pytest.approx(mixture, abs=1e-5)
        assert out["single_mean"][split] == pytest.approx(mean_single, abs=1e-5)
        # the test tells the mixture from averaging losses or logits
        assert abs(mixture - mean_single) > 1e-3 and abs(mixture - mean_logits) > 1e-4
    for d in members:
        trained = json.loads((d / "results.json").read_text())["loss"]
        assert out["single"][str(d)]["val"] == pytest.approx(trained["val"], abs=1e-6)
    # Jensen: -log of a mean probability is at most the mean of the -logs
    vals = [out["single"][str(d)]["val"] for d in members]
    assert out["ensemble"]["val"] < np.mean(vals) - 1e-3


def test_a_sweep_dir_expands_to_its_finished_members(seed_sweep, two_seeds, tmp_path):
    sweep_dir, members = seed_sweep
    assert evaluate.ensemble_dirs([sweep_dir]) == members and len(members) == 2
    assert evaluate.ensemble_losses([sweep_dir], ("val", "test")) == two_seeds
    record = json.loads((sweep_dir / sweep.SWEEP_FILE).read_text())
    partial = tmp_path / "partial"
    partial.mkdir()
    record["members"][0]["workdir"] = str(members[0])  # absolute: joins to itself
    record["members"][1]["status"] = "diverged"
    (partial / sweep.SWEEP_FILE).write_text(json.dumps(record))
    assert evaluate.ensemble_dirs([partial]) == [members[0]]
    record["members"][0]["status"] = "running"
    (partial / sweep.SWEEP_FILE).write_text(json.dumps(record))
    with pytest.raises(UserError, match=f"sweep '{partial}' has no finished member"):
        evaluate.ensemble_dirs([partial])


def one_line_error(capsys, argv):
    """The stderr of `evaluate` on `argv`: exit status 2, one line, no traceback."""
    assert errors.run_cli(evaluate.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_mismatched_members_and_bad_dirs_are_one_line_errors(workdir, seed_sweep, capsys):
    _, members = seed_sweep
    data = workdir.parent / "small_names.txt"
    other_split = workdir.parent / "bigram_split7"
    train_and_evaluate(*tiny_config("bigram_counts", data, split_seed=7), other_split)
    capsys.readouterr()  # training's progress lines
    err = one_line_error(capsys, ["--ensemble", str(workdir), str(other_split)])
    assert f"'{other_split}' has split_seed=7" in err and f"'{workdir}' has split_seed=1337" in err
    err = one_line_error(capsys, ["--ensemble", str(members[0]), str(workdir)])
    assert f"'{workdir}' has layout='windows' but '{members[0]}' has layout='sequences'" in err
    neither = workdir.parent
    err = one_line_error(capsys, ["--ensemble", str(workdir), str(neither)])
    assert f"'{neither}' is neither a run directory" in err
    assert "at least one" in one_line_error(capsys, ["--ensemble"])
    assert "twice" in one_line_error(capsys, ["--ensemble", str(workdir), str(workdir)])


@pytest.mark.heavy
def test_sweep_report_reads_a_sweep_or_its_run_dirs_alike(seed_sweep, capsys):
    """scripts/sweep_report.py: grouped by a config key, each row is that member's results.json;
    the sweep directory and its members listed one by one give the same table."""
    import sweep_report as report  # scripts/ is on pytest's pythonpath

    sweep_dir, members = seed_sweep
    assert report.main([str(sweep_dir), "--key", "seed", "--num", "50"]) == 0
    by_sweep = capsys.readouterr().out.splitlines()
    assert report.main([*map(str, members), "--key", "seed", "--num", "50"]) == 0
    assert capsys.readouterr().out.splitlines() == by_sweep
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in by_sweep[2:]}
    assert sorted(rows) == ["0", "1"]
    for seed, member in zip(("0", "1"), members, strict=True):
        val = json.loads((member / "results.json").read_text())["loss"]["val"]
        assert rows[seed][1] == "1" and rows[seed][3] == f"{val:.4f} ± 0.0000"
        copies, heldout, new = (float(cell.split(" ± ")[0]) for cell in rows[seed][-7:-4])
        assert min(copies, heldout, new) >= 0.0 and abs(copies + heldout + new - 1.0) < 2e-3
        masses = evaluate.split_masses(load_trained(member))
        mass_train, mass_heldout = (float(cell.split(" ± ")[0]) for cell in rows[seed][-3:-1])
        assert mass_train == pytest.approx(masses["train"]["mass"], abs=6e-4)
        assert mass_heldout == pytest.approx(masses["heldout"]["mass"], abs=6e-4)
    # 20% of samples in 800 training words, 5% in 200 held-out words: the same rate per word
    assert report.seen_word_preference(0.2, 0.05, 800, 200) == pytest.approx(1.0)
    assert report.seen_word_preference(0.4, 0.05, 800, 200) == pytest.approx(2.0)
    assert report.seen_word_preference(0.4, 0.0, 800, 200) == float("inf")
    assert report.mean_std([1.0, float("inf")]) == "inf"
    assert errors.run_cli(report.main, [str(sweep_dir), "--key", "model.no_such"]) == 2
    assert "no key 'model.no_such'" in capsys.readouterr().err
