import numpy as np
import pytest
from conftest import run_cli, tiny_config

from jax_makemore.train import train_and_evaluate

pytest.importorskip("matplotlib")

from jax_makemore import plot  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_size=(200, 150)):
    """A real picture: PNG bytes, at least `min_size` pixels (width, height), not one colour."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (path, width, height)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert np.unique(rgb, axis=0).shape[0] > 10, f"{path} is (nearly) blank"


@pytest.mark.heavy
def test_mlp_run_with_diagnostics_gets_every_picture(tmp_path, small_names):
    # n_embd 3: the embedding map goes through the PCA branch
    config, name = tiny_config(
        "mlp",
        small_names,
        num_steps=200,
        steps_per_call=50,
        eval_every=100,
        checkpoint_every=200,
        n_embd=3,
        log_diagnostics=True,
        diagnostics_every=50,
    )
    train_and_evaluate(config, name, tmp_path / "run")
    written, skipped = plot.plot_run(tmp_path / "run", tmp_path / "pics")
    names = sorted(p.name for p in written)
    assert names == ["activations.png", "embedding.png", "loss.png", "updates.png"]
    assert skipped == ["bigram.png: model mlp is not a fitted count table"]
    for path in written:
        assert path.parent == tmp_path / "pics"
        assert_png(path)


@pytest.mark.heavy
def test_count_bigram_gets_the_labelled_count_matrix(tmp_path, small_names):
    config, name = tiny_config("bigram_counts", small_names)
    train_and_evaluate(config, name, tmp_path / "run")
    written, skipped = plot.plot_run(tmp_path / "run")  # default: into the workdir
    # no training steps (no metrics), no embedding, no diagnostics
    assert [p.name for p in written] == ["bigram.png"]
    assert skipped[0] == "loss.png: the workdir has no metrics.jsonl"
    assert any(s.startswith("embedding.png: model bigram_counts has no") for s in skipped)
    assert_png(tmp_path / "run" / "bigram.png")


def test_pca_projection_matches_numpy_and_2d_is_kept():
    emb = np.random.default_rng(0).normal(size=(27, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1])
    coords, ratio = plot.project_2d(emb)
    centered = emb - emb.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(np.cov(centered.T)))[::-1]
    np.testing.assert_allclose(ratio, eig[:2] / eig.sum(), rtol=1e-6)
    np.testing.assert_allclose(coords.var(axis=0, ddof=1), eig[:2], rtol=1e-6)
    flat = emb[:, :2]
    same, none = plot.project_2d(flat)
    assert none is None and np.array_equal(same, flat)


def test_embedding_png_for_2d_table(tmp_path):
    emb = np.random.default_rng(1).normal(size=(27, 2))
    itos = tuple("abcdefghijklmnopqrstuvwxyz.")
    assert_png(plot.plot_embedding(emb, itos, 26, tmp_path / "e.png"))


def test_cli_without_checkpoint_is_a_one_line_error(tmp_path):
    result = run_cli("plot", "--workdir", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "checkpoint" in lines[0]


def test_a_blank_picture_fails_assert_png(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 3))
    fig.savefig(tmp_path / "blank.png")
    plt.close(fig)
    with pytest.raises(AssertionError, match="blank"):
        assert_png(tmp_path / "blank.png")


@pytest.mark.heavy
def test_compare_draws_several_runs_in_one_picture(tmp_path, small_names, capsys):
    """--compare: two runs' curves in one PNG at --out; a directory that is not a trained run
    and an --out that is not a .png are one-line errors."""
    from jax_makemore import errors

    for seed in (0, 1):
        config, name = tiny_config("mlp", small_names, num_steps=100, eval_every=50, seed=seed)
        train_and_evaluate(config, name, tmp_path / f"run{seed}")
    runs = [str(tmp_path / "run0"), str(tmp_path / "run1")]
    out = tmp_path / "pics" / "both.png"
    assert plot.main(["--compare", *runs, "--out", str(out)]) == 0
    assert_png(out)
    capsys.readouterr()
    for args, message in (
        (["--compare", str(tmp_path), "--out", str(out)], f"'{tmp_path}' has no metrics.jsonl"),
        (["--compare", *runs, "--out", str(tmp_path)], "must name a .png file"),
        (["--compare", *runs], "--compare needs --out"),
    ):
        assert errors.run_cli(plot.main, args) == 2
        assert message in capsys.readouterr().err


# The pictures as Figures (run_figures and the *_figure functions), and the command saving them.


@pytest.fixture(scope="module")
def diag_run(tmp_path_factory):
    """An mlp run (n_embd 3) trained with diagnostics: every picture but the count table."""
    from conftest import write_small_names

    root = tmp_path_factory.mktemp("diag")
    config, name = tiny_config(
        "mlp", write_small_names(root), num_steps=100, steps_per_call=50, eval_every=50,
        checkpoint_every=100, n_embd=3, log_diagnostics=True, diagnostics_every=50,
    )  # fmt: skip
    train_and_evaluate(config, name, root / "run")
    return root / "run"


def is_figure(fig) -> bool:
    from matplotlib.figure import Figure

    return isinstance(fig, Figure)


def same_png(a, b) -> bool:
    """Byte-identical files, or failing that the same size and pixels."""
    import matplotlib.image

    if a.read_bytes() == b.read_bytes():
        return True
    pa, pb = matplotlib.image.imread(a), matplotlib.image.imread(b)
    return pa.shape == pb.shape and np.array_equal(pa, pb)


def test_run_figures_are_figures_with_the_run_content(diag_run):
    from jax_makemore import diagnostics
    from jax_makemore.restore import load_trained
    from jax_makemore.workdir import read_jsonl

    figures = plot.run_figures(diag_run)
    assert list(figures) == ["loss", "embedding", "activations", "updates"]
    assert all(is_figure(f) for f in figures.values())
    metrics = read_jsonl(diag_run / "metrics.jsonl")
    evals = [m["split_loss"] for m in metrics if m.get("split_loss")]
    watched = {s for e in evals for s, v in e.items() if v is not None and s != "test"}
    assert watched == {"train", "val"}
    (ax,) = figures["loss"].axes
    assert len(ax.lines) == 1 + len(watched)  # the chunk means, then one line per split
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [m["loss"] for m in metrics if "loss" in m])
    (ax,) = figures["embedding"].axes
    assert [t.get_text() for t in ax.texts] == list(load_trained(diag_run).vocab.itos)
    assert len(ax.collections) == 3  # other characters, vowels, the boundary token
    rows = read_jsonl(diag_run / diagnostics.FILENAME)
    tanh, ratios = rows[-1]["tanh"], rows[-1]["update_ratio"]
    act = figures["activations"].axes
    assert len(act) == 3 and len(act[0].lines) == 2 * len(tanh) and len(act[1].lines) == len(tanh)
    assert len(act[2].lines) > 0
    (ax,) = figures["updates"].axes
    assert len(ax.lines) == len(ratios) + 1  # one per weight matrix, and the 1e-3 guide
    assert [line.get_label() for line in ax.lines[:-1]] == list(ratios)


def test_the_command_writes_what_run_figures_saves(diag_run, tmp_path):
    """`plot --workdir` at --dpi 60: each PNG is the one of saving run_figures()[stem]."""
    assert (
        plot.main(["--workdir", str(diag_run), "--out", str(tmp_path / "cmd"), "--dpi", "60"]) == 0
    )
    written = sorted(p.name for p in (tmp_path / "cmd").iterdir())
    figures = plot.run_figures(diag_run)
    assert written == sorted(f"{stem}.png" for stem in figures)
    for stem, fig in figures.items():
        mine = tmp_path / f"{stem}.png"
        fig.savefig(mine, dpi=60, bbox_inches="tight")
        assert same_png(tmp_path / "cmd" / f"{stem}.png", mine), stem
    figures["loss"].savefig(tmp_path / "at100.png", dpi=100, bbox_inches="tight")
    assert not same_png(tmp_path / "cmd" / "loss.png", tmp_path / "at100.png")  # dpi matters


def test_embedding_figure_of_a_loaded_model_places_each_character(diag_run):
    from jax_makemore.restore import load_trained

    loaded = load_trained(diag_run)
    fig = plot.embedding_figure_of(loaded)
    emb_VxE = plot.find_token_embedding(loaded.variables["params"], loaded.vocab.size)
    assert emb_VxE.shape == (loaded.vocab.size, 3)
    coords, _ = plot.project_2d(emb_VxE)
    placed = np.array([t.get_position() for t in fig.axes[0].texts])
    np.testing.assert_allclose(placed, coords)
    assert "top-2 PCA of n_embd 3" in fig.axes[0].get_title()
    assert plot.bigram_figure_of(loaded) is None  # an mlp is not a count table


@pytest.mark.heavy
def test_count_bigram_figure_counts_the_training_pairs(tmp_path, small_names):
    """The count table of a loaded bigram_counts model against pairs counted here from the
    training split; the command's bigram.png (default dpi 80) is that figure saved."""
    from jax_makemore.data import read_words, split_data
    from jax_makemore.restore import load_trained

    config, name = tiny_config("bigram_counts", small_names)
    train_and_evaluate(config, name, tmp_path / "run")
    loaded = load_trained(tmp_path / "run")
    words = read_words(config.data_path, config.max_word_length)
    train = split_data(words, config.split_seed, config.split_fractions, config.split_by)[0]
    vocab = loaded.vocab
    stoi = {c: i for i, c in enumerate(vocab.itos)}
    expected_VxV = np.zeros((vocab.size, vocab.size))
    for word in train:
        ids = [vocab.boundary_id] + [stoi[c] for c in word] + [vocab.boundary_id]
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            expected_VxV[a, b] += 1
    np.testing.assert_array_equal(plot.bigram_counts_of(loaded), expected_VxV)
    figures = plot.run_figures(tmp_path / "run", loaded)
    assert list(figures) == ["bigram"]
    (ax,) = figures["bigram"].axes
    assert len(ax.images) == 1 and len(ax.texts) == 2 * vocab.size**2  # pair and count per cell
    np.testing.assert_array_equal(ax.images[0].get_array(), expected_VxV)
    assert plot.embedding_figure_of(loaded) is None
    written, _ = plot.plot_run(tmp_path / "run", tmp_path / "cmd")
    figures["bigram"].savefig(tmp_path / "mine.png", dpi=80, bbox_inches="tight")
    assert same_png(written[0], tmp_path / "mine.png")


def fake_metrics(directory, losses, vals, ema=None):
    """A metrics.jsonl as train writes it: chunk losses every 10 steps, split losses at the end."""
    import json

    directory.mkdir(parents=True)
    rows = [{"step": 10 * (i + 1), "loss": x} for i, x in enumerate(losses)]
    for step, val in vals:
        row = {"step": step, "split_loss": {"train": val - 0.1, "val": val, "test": None}}
        if ema is not None:
            row["split_loss_ema"] = {"train": ema - 0.1, "val": ema, "test": None}
        rows.append(row)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def fake_sweep(tmp_path):
    """A sweep.json over lr (2 values) x seed (2 values), members with metrics and val losses."""
    import json

    members = []
    for i, (lr, seed) in enumerate([(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]):
        name = f"m{i}"
        fake_metrics(tmp_path / "sweep" / "members" / name, [3.0, 2.8 - i / 10], [(20, 2.5 + i)])
        members.append({
            "name": name, "workdir": f"members/{name}", "overrides": {"lr": lr, "seed": seed},
            "status": "done", "steps": 20, "loss": {"train": 2.4, "val": 2.5 + i, "test": None},
        })  # fmt: skip
    record = {"config": "mlp", "swept": {"lr": [0.01, 0.1], "seed": [0, 1]}, "members": members}
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(record))
    return tmp_path / "sweep", record


def test_sweep_figures_and_the_command_on_a_sweep(fake_sweep, tmp_path):
    workdir, record = fake_sweep
    figures = plot.run_figures(workdir)
    assert list(figures) == ["sweep", "sweep_curves"] and list(plot.sweep_figures(workdir)) == [
        "sweep", "sweep_curves"
    ]  # fmt: skip
    (ax,) = figures["sweep"].axes  # one panel: seed is averaged over, not a panel
    assert ax.get_xlabel() == "lr" and ax.get_xscale() == "log"
    (bars,) = ax.containers  # one errorbar: no other non-seed key to draw lines for
    mean = bars.lines[0]  # its line through the means over seeds
    np.testing.assert_allclose(np.asarray(mean.get_xdata(), float), [0.01, 0.1])
    np.testing.assert_allclose(
        np.asarray(mean.get_ydata(), float), [(2.5 + 3.5) / 2, (4.5 + 5.5) / 2]
    )
    ax_train, ax_val = figures["sweep_curves"].axes
    assert len(ax_train.lines) == len(ax_val.lines) == 4
    assert [t.get_text() for t in ax_train.get_legend().get_texts()] == ["lr=0.01", "lr=0.1"]
    written, skipped = plot.plot_run(workdir, tmp_path / "cmd", dpi=50)
    assert [p.name for p in written] == ["sweep.png", "sweep_curves.png"] and skipped == []
    for path in written:
        figures[path.stem].savefig(tmp_path / path.name, dpi=50, bbox_inches="tight")
        assert same_png(path, tmp_path / path.name), path


def test_compare_figure_draws_each_run_and_refuses_runs_without_steps(tmp_path):
    from jax_makemore.errors import UserError

    fake_metrics(tmp_path / "a", [3.0, 2.9, 2.7], [(30, 2.6)])
    fake_metrics(tmp_path / "b", [3.1, 2.8], [(20, 2.7)], ema=2.65)
    fig = plot.compare_figure([tmp_path / "a", tmp_path / "b"])
    ax_train, ax_val = fig.axes
    assert [line.get_label() for line in ax_train.lines] == ["a", "b"]
    np.testing.assert_allclose(ax_train.lines[1].get_ydata(), [3.1, 2.8])
    assert len(ax_val.lines) == 3  # a's val, b's val and b's averaged-params val
    assert ax_val.get_title() == "val loss (dashed: averaged params)"
    fake_metrics(tmp_path / "empty", [], [])
    with pytest.raises(UserError, match="none of the runs has logged a training step"):
        plot.compare_figure([tmp_path / "empty"])
    with pytest.raises(UserError, match="has no metrics.jsonl"):
        plot.compare_figure([tmp_path])
    assert plot.curves_figure([("x", [])], "nothing") is None


def test_figures_stay_out_of_pyplot(diag_run):
    """No figure is registered with pyplot and the backend is not switched: a notebook's
    inline display and its open figures are left alone."""
    import matplotlib
    import matplotlib.pyplot as plt

    backend, open_before = matplotlib.get_backend(), plt.get_fignums()
    figures = plot.run_figures(diag_run)
    figures["compare"] = plot.compare_figure([diag_run])
    assert plt.get_fignums() == open_before and matplotlib.get_backend() == backend
    assert all(f.canvas.manager is None for f in figures.values())


def test_figure_functions_without_matplotlib_are_a_one_line_error(monkeypatch):
    import sys

    from jax_makemore.errors import UserError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(UserError, match=r"plotting needs matplotlib: pip install matplotlib"):
        plot.loss_figure([{"step": 1, "loss": 3.0}], "run")
    with pytest.raises(UserError, match="plotting needs matplotlib"):
        plot.run_figures("no-such-dir")
