import jax
import numpy as np
import pytest
from conftest import assert_png, run_cli, tiny_config

from jax_makemore.config import resolve
from jax_makemore.errors import UserError
from jax_makemore.lr_find import lr_find, smooth, suggest, sweep_learning_rates


def test_sweep_is_exponential_between_the_bounds():
    lrs = sweep_learning_rates(1e-3, 1.0, 4)
    np.testing.assert_allclose(lrs, [1e-3, 1e-2, 1e-1, 1.0])


def test_smoothing_marks_everything_after_divergence_infinite():
    losses = np.array([3.0, 2.0, 1.0, 2.0, np.nan, 1.0])
    out = smooth(losses, 3)
    assert np.isfinite(out[:4]).all() and np.isinf(out[4:]).all()
    # centred window of 3 over the finite losses only
    np.testing.assert_allclose(out[:4], [2.5, 2.0, 5 / 3, 1.5])
    assert suggest(np.arange(6.0), out) == 3.0
    with pytest.raises(UserError):
        suggest(np.arange(2.0), np.array([np.inf, np.inf]))


def _smoothed_minimum_by_hand(lrs, losses_RxS, window):
    """The suggestion computed independently: mean over repeats, a centred moving average
    written as a loop, the rate at its minimum."""
    mean = losses_RxS.astype(np.float64).mean(axis=0)
    n = len(mean)
    smoothed = [
        np.mean(mean[max(i - window // 2, 0) : min(i + (window + 1) // 2, n)]) for i in range(n)
    ]
    return lrs[int(np.argmin(smoothed))]


def test_tiny_mlp_sweep_suggests_the_smoothed_minimum(small_names):
    config, _ = tiny_config("mlp", small_names, n_hidden=32)
    result = lr_find(config, 1e-3, 1.0, num_steps=300, repeats=2)
    assert result.losses_RxS.shape == (2, 300)
    assert np.isfinite(result.losses_RxS).all()  # the by-hand average has no divergence branch
    expected = _smoothed_minimum_by_hand(result.lrs_S, result.losses_RxS, 300 // 20)
    assert result.suggested_lr == pytest.approx(expected, rel=1e-12)
    # the runs learn: the smoothed loss at the suggestion is below the starting loss
    best = int(np.argmin(result.smoothed_S))
    assert result.smoothed_S[best] < result.smoothed_S[0] - 0.1
    # repeats draw different init and batches
    assert not np.allclose(result.losses_RxS[0], result.losses_RxS[1])


def test_count_bigram_has_no_learning_rate(small_names):
    config, _ = tiny_config("bigram_counts", small_names)
    with pytest.raises(UserError, match="fitted in closed form; there is no learning rate"):
        lr_find(config)


@pytest.mark.heavy
def test_cli_prints_the_bottom_of_the_smoothed_curve_and_draws_it(tmp_path, small_names):
    pytest.importorskip("matplotlib")
    # a range wide enough for the bigram's valley to lie inside it (from 1e-3 to 1 the loss only
    # falls, and the suggestion would be the upper bound whatever the search did)
    search = dict(min_lr=0.1, max_lr=1e4, num_steps=100, repeats=2)
    result = run_cli(
        "lr_find",
        "--config",
        "bigram",
        f"--config.data_path={small_names}",
        *(f"--{key}={value}" for key, value in search.items()),
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("suggested learning rate:")
    printed = float(line.split(":")[1])
    # the same search in this process, on the CPU as the command ran it
    config, _ = resolve("bigram", [("data_path", str(small_names))])
    with jax.default_device(jax.devices("cpu")[0]):
        same = lr_find(config, **search)
    bottom = int(np.argmin(same.smoothed_S))
    assert 0 < bottom < search["num_steps"] - 1, "no valley inside the range: pick another one"
    # printed to 3 significant figures; neighbouring rates differ by 10^(5/99), about 12%
    assert printed == pytest.approx(same.lrs_S[bottom], rel=5e-3)
    assert_png(tmp_path / "lr_find.png")


@pytest.mark.heavy
def test_the_search_steps_with_trains_step_on_packed_rows(tmp_path, small_names):
    """lr_find trains a packed config on the rows train packs: its step is the same program
    as train's (the same jaxpr for the same state and data), and not the padded-rows one."""
    from jax_makemore.lr_find import lr_find_step
    from jax_makemore.train import build_run, train_step_from_config

    config, name = tiny_config(
        "transformer", small_names, n_layer=1, n_embd=16, n_head=2, batch_size=8, num_devices=1
    )
    assert config.packed
    r = build_run(config, name, tmp_path / "w")
    assert r.packing is not None

    def program(step):
        return str(jax.make_jaxpr(step)(r.state, r.X_train, r.Y_train))

    searched = program(lr_find_step(config, r.model, r.spec, r.ds))
    assert searched == program(train_step_from_config(config, r.model, r.spec, r.packing))
    assert searched != program(train_step_from_config(config, r.model, r.spec, None))


def test_the_figure_is_drawn_without_pyplot():
    pytest.importorskip("matplotlib")
    import sys

    from matplotlib.figure import Figure

    from jax_makemore.lr_find import LRFindResult, lr_find_figure

    lrs_S = sweep_learning_rates(1e-3, 1.0, 50)
    losses_RxS = np.stack(
        [3.0 - np.sin(np.linspace(0, 3, 50)), 3.1 - np.sin(np.linspace(0, 3, 50))]
    )
    smoothed_S = smooth(losses_RxS.mean(axis=0), 5)
    result = LRFindResult(lrs_S, losses_RxS, smoothed_S, suggest(lrs_S, smoothed_S))
    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig = lr_find_figure(result, "a title")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "a title"
    assert len(fig.axes[0].lines) == 2 + 1 + 1  # two runs, the smoothed mean, the suggestion
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
