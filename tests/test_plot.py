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
