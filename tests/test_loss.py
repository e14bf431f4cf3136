"""The one masked NLL and the padded batches every evaluation goes through, against numpy."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jax_makemore.data import IGNORE
from jax_makemore.loss import (
    evaluate_loss,
    masked_nll,
    masked_nll_per_position,
    padded_batches,
)


def _numpy_nll(logits, targets):
    """-log softmax(logits)[target] in float64, 0 where the target is IGNORE."""
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    safe = np.where(targets == IGNORE, 0, targets)
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    return np.where(targets == IGNORE, 0.0, nll)


def test_per_position_nll_is_zero_where_ignored_and_sums_to_masked_nll():
    logits_BxTxV = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5))
    Y_BxT = np.array([[1, 4, IGNORE, IGNORE], [0, 0, 2, 3], [IGNORE, 1, 1, 4]])
    nll_BxT, counted_BxT = masked_nll_per_position(logits_BxTxV, Y_BxT)
    np.testing.assert_allclose(nll_BxT, _numpy_nll(logits_BxTxV, Y_BxT), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(counted_BxT, Y_BxT != IGNORE)
    total, count = masked_nll(logits_BxTxV, Y_BxT)
    assert int(count) == 9
    assert float(total) == pytest.approx(_numpy_nll(logits_BxTxV, Y_BxT).sum(), rel=1e-5)


def test_padded_batches_have_one_size_and_pad_with_ignored_targets():
    X = np.arange(7 * 2).reshape(7, 2)
    Y = np.arange(7)
    batches = padded_batches(X, Y, 3)
    assert [b[0].shape for b in batches] == [(3, 2)] * 3
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches])[:7], X)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), [*Y, IGNORE, IGNORE])
    assert [b[0].shape for b in padded_batches(X, Y, 100)] == [(7, 2)]  # capped at the split
    assert padded_batches(X[:0], Y[:0], 3) == []


def test_evaluate_loss_over_padded_batches_equals_one_pass():
    W_VxV = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, 6)))
    X = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (11,), 0, 6))
    Y = np.array(jax.random.randint(jax.random.PRNGKey(3), (11,), 0, 6))
    Y[4] = IGNORE

    def step(W, X_b, Y_b):
        return masked_nll(W[X_b], Y_b)

    expected = _numpy_nll(W_VxV[X], Y).sum() / 10
    assert evaluate_loss(step, W_VxV, X, Y, 4) == pytest.approx(expected, rel=1e-6)
    assert evaluate_loss(step, W_VxV, X[:0], Y[:0], 4) is None
