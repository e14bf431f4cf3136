import numpy as np
import pytest
from conftest import run_cli, tiny_config

from jax_makemore.train import train_and_evaluate

pytest.importorskip("matplotlib")

from jax_makemore import plot  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path


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
    written = plot.plot_run(tmp_path / "run", tmp_path / "pics")
    names = sorted(p.name for p in written)
    assert names == ["activations.png", "embedding.png", "loss.png", "updates.png"]
    for path in written:
        assert path.parent == tmp_path / "pics"
        assert_png(path)


def test_count_bigram_gets_the_labelled_count_matrix(tmp_path, small_names):
    config, name = tiny_config("bigram_counts", small_names)
    train_and_evaluate(config, name, tmp_path / "run")
    written = plot.plot_run(tmp_path / "run")  # default: into the workdir
    assert [p.name for p in written] == ["bigram.png"]  # no training steps, no embedding
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
