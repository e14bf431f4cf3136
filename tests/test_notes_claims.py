"""The notes-claims command (the `claims` package behind scripts/notes_claims.py): the verdict
rule on constructed inputs, the exact demonstrations (keepdim, the zero gradient of b1, the std of tanh(N(0, 1))), the helper models and measures,
and (slow) `--quick`, which must write both reports with every claim and a verdict each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, write_small_names

from claims import bigram, context, exact, helpers, initialisation, runner, verdict

SCRIPT = REPO / "scripts" / "notes_claims.py"

#: Every claim the report must carry.
CLAIM_KEYS = {
    "bigram_floor", "one_hot", "l2", "keepdim", "block_size", "embeddings", "kaiming",
    "init_bn", "running_stats", "batch_of_one", "minibatch", "examples_seen", "name_length",
    "b1",
}  # fmt: skip


# --- the verdict rule ------------------------------------------------------------------------


def test_difference_part_holds_only_with_the_claimed_sign_beyond_twice_the_spread():
    lower = [2.00, 2.01, 1.99, 2.00]
    higher = [2.10, 2.11, 2.09, 2.10]
    assert verdict.difference_part("a below b", lower, higher, -1)["holds"]
    assert not verdict.difference_part("a above b", lower, higher, +1)["holds"]  # wrong sign
    noisy = [1.8, 2.4, 2.0, 2.2]  # mean 2.1, but a spread far larger than 0.1
    assert not verdict.difference_part("a below b", lower, noisy, -1)["holds"]
    part = verdict.difference_part("a below b", lower, higher, -1)
    assert part["difference"] == pytest.approx(-0.10)
    assert part["spread"] == pytest.approx(np.hypot(np.std(lower, ddof=1), np.std(higher, ddof=1)))


def test_paired_difference_uses_the_spread_of_per_seed_differences():
    a = [1.0, 2.0, 3.0, 4.0]
    b = [1.1, 2.1, 3.1, 4.1]  # each seed 0.1 above: unpaired spread is huge, paired is 0
    assert not verdict.difference_part("a below b", a, b, -1)["holds"]
    paired = verdict.difference_part("a below b", a, b, -1, paired=True)
    assert paired["holds"] and paired["spread"] == pytest.approx(0.0, abs=1e-12)


def test_figure_and_bound_parts():
    assert verdict.figure_part("≈ 0.63", 0.6278, 0.63, 0.005)["holds"]
    assert not verdict.figure_part("~2.42", 2.454, 2.42, 0.005)["holds"]
    assert verdict.bound_part("below", 0.5, 1.0, below=True)["holds"]
    assert not verdict.bound_part("below", 1.5, 1.0, below=True)["holds"]
    assert verdict.bound_part("above", 1.5, 1.0, below=False)["holds"]


def test_combine_gives_each_verdict():
    yes, no = {"holds": True}, {"holds": False}
    assert verdict.combine([yes, yes]) == verdict.HOLDS == "holds"
    assert verdict.combine([yes, no]) == verdict.PARTLY == "partly holds"
    assert verdict.combine([no, no]) == verdict.FAILS == "does not hold"
    with pytest.raises(ValueError):
        verdict.combine([])


# --- exact demonstrations --------------------------------------------------------------------


def test_keepdim_wrong_table_rows_do_not_sum_to_one(tmp_path):
    counts, vocab = bigram.whole_file_counts(write_small_names(tmp_path))
    right, wrong = exact.keepdim_tables(counts + 1)
    np.testing.assert_allclose(right.sum(1), 1.0, atol=1e-12)
    assert np.abs(wrong.sum(1) - 1).max() > 0.1
    assert not np.allclose(right, wrong)
    # every character is preceded and followed once: row sums equal column sums, so the
    # table without keepdim is normalised along the other axis
    np.testing.assert_allclose(counts.sum(0), counts.sum(1))
    np.testing.assert_allclose(wrong.sum(0), 1.0, atol=1e-12)
    assert counts.shape == (vocab.size, vocab.size)


def test_keepdim_on_a_constructed_table():
    counts = np.array([[1.0, 3.0], [6.0, 2.0]])
    right, wrong = exact.keepdim_tables(counts)
    np.testing.assert_allclose(right, [[0.25, 0.75], [0.75, 0.25]])
    np.testing.assert_allclose(wrong, [[1 / 4, 3 / 8], [6 / 4, 2 / 8]])  # column j / row j's sum


def test_tanh_of_a_standard_normal_has_std_0_6278():
    assert exact.tanh_std_exact() == pytest.approx(0.62793, abs=1e-5)  # a dense trapezoid agrees
    assert abs(exact.tanh_std_sampled(1_000_000) - 0.6278) < 0.005


@pytest.mark.heavy
def test_b1_gradient_is_zero_under_batchnorm(tmp_path):
    ds = runner.dataset(write_small_names(tmp_path), 3)
    X, Y = ds.split("train")
    g = exact.b1_gradient(jnp.asarray(X[:32]), jnp.asarray(Y[:32]), ds.vocab.size)
    assert g["rms_other_grads"] > 1e-4  # the other gradients are not zero
    assert g["ratio"] < 1e-6
    assert g["max_logit_change_b1_plus_5"] < 1e-4


# --- helper models and measures --------------------------------------------------------------


def test_helper_models_register_and_build():
    helpers.register_helpers()
    config = helpers.helper_config("notes_deep_tanh")
    assert config.model.name == "notes_deep_tanh" and config.model.n_layer == 5
    assert helpers.helper_config("notes_raw_bigram").full_batch  # the bigram config's recipe
    x = jnp.zeros((4, 3), jnp.int32)
    deep = helpers.DeepTanhMLP(vocab_size=27)
    variables = deep.init(jax.random.PRNGKey(0), x, False)
    stats = initialisation.layer_stats(
        deep, variables, jax.random.randint(jax.random.PRNGKey(1), (64, 3), 0, 27)
    )
    assert len(stats["preact_std"]) == 5 and all(0 <= s <= 1 for s in stats["saturated"])
    raw = helpers.RawIntBigram(vocab_size=27)
    logits = raw.apply(raw.init(jax.random.PRNGKey(0), x[:, :1], False), x[:, :1], False)
    assert logits.shape == (4, 27)


def test_helper_config_files_import_the_package_and_resolve(tmp_path):
    """The files the sweep command takes as `--config PATH` import `claims.helpers` (no path
    tricks), and jax_makemore's own config loader resolves each to its helper model."""
    from jax_makemore.config import resolve

    paths = helpers.write_helper_configs(tmp_path)
    assert set(paths) == {"notes_raw_bigram", "notes_deep_tanh"}
    for name, path in paths.items():
        text = path.read_text()
        assert "from claims.helpers import helper_config" in text
        assert "spec_from_file_location" not in text and "sys.path" not in text
        config, _ = resolve(str(path), [])
        assert config.model.name == name


def test_stat_difference_part_is_difference_part_on_aggregates():
    a, b = [2.0, 2.1, 1.9], [2.5, 2.4, 2.6]
    part = verdict.difference_part("a below b", a, b, -1)
    same = verdict.stat_difference_part("a below b", part["difference"], part["spread"], -1)
    assert same == part and part["holds"]
    assert not verdict.stat_difference_part("x", -0.1, 0.06, -1)["holds"]  # 0.1 < 2 x 0.06


def test_embedding_geometry_on_a_constructed_table():
    itos = [*"abcdefghijklmnopqrstuvwxyz", "."]
    rng = np.random.default_rng(0)
    C = np.zeros((27, 2))
    for i, c in enumerate(itos[:-1]):
        C[i] = (0.0, 0.0) if c in "aeiou" else (5.0, 0.0)
        C[i] += rng.normal(0, 0.1, 2)
    for c in "qxj":
        C[itos.index(c)] = (5.0, 6.0)
    C[-1] = (-20.0, -20.0)
    g = context.embedding_geometry(C, itos)
    assert g["within_vowel"] < g["vowel_consonant"]
    assert g["rare_centroid"] > g["other_centroid"]
    assert g["boundary_nn"] > g["letters_nn"]
    assert {g["rank_q"], g["rank_x"], g["rank_j"]} <= {2.0, 3.0, 4.0}  # the boundary is first


def test_ks_distance_and_weighted_kl():
    assert context.ks_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert context.ks_distance([1, 1], [5, 5]) == 1.0
    counts = np.array([[3.0, 1.0], [0.0, 4.0]])
    probs = counts / counts.sum(1, keepdims=True)
    assert bigram.weighted_kl(counts, probs) == pytest.approx(0.0, abs=1e-12)
    assert bigram.weighted_kl(counts, np.full((2, 2), 0.5)) > 0.1


# --- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_writes_every_claim_with_a_verdict(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "claims.json").read_text())
    claims = {c["key"]: c for c in report["claims"]}
    assert set(claims) == CLAIM_KEYS
    for c in claims.values():
        assert c["verdict"] in verdict.VERDICTS
        assert c["parts"] and c["quote"] and c["commands"] and c["why"]
        assert c["verdict"] == verdict.combine(c["parts"])
    assert report["provenance"]["seeds"] == [0, 1]
    assert len(report["provenance"]["data_sha256"]) == 64
    md = (tmp_path / "claims.md").read_text()
    for c in claims.values():
        assert f"| {c['title']} | {c['verdict']} |" in md
        assert f"**Verdict: {c['verdict']}.**" in md
    assert Path(tmp_path / "runs" / "block_size" / "sweep.json").is_file()
