"""The eager PyTorch references of the window models: makemore's MLP (training and per-word
sampling) and the WaveNet lecture's model (training)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.machine import Sizes, median_seconds
from benchmarks.torch_wavenet import torch_wavenet_chars_per_sec


def torch_reference(
    config, ds, variables, max_len: int, sizes: Sizes, log: Callable[[str], None]
) -> tuple[float | None, float | None, str | None]:
    """(steps/s, names/s, reason when None) of the eager PyTorch reference of the config's
    model: makemore's MLP (training and per-word sampling) or the WaveNet lecture's window
    model (training only). makemore.py's Transformer and GRU: bench_vs_torch."""
    name = config.model.name
    if name == "wavenet":
        return torch_reference_training(config, ds, sizes, log)
    if name != "mlp" or not config.model.use_batchnorm:
        return None, None, f"no PyTorch reference for model {name}"
    try:
        import torch
    except ImportError:
        return None, None, "torch is not installed (pip install -e '.[bench]')"

    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    train_steps = mlp_train_steps(config, ds, g)
    # torch's best thread count: its default (one per core) or one, which a batch of 32 favours
    # and which does not collapse when other processes share the cores (OpenMP spin-waits)
    trial: dict[int, float] = {}
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        train_steps(20)
        trial[threads] = median_seconds(lambda: train_steps(50), 3)
    torch.set_num_threads(min(trial, key=trial.get))
    steps = sizes.torch_steps
    steps_per_sec = steps / median_seconds(lambda: train_steps(steps), sizes.repeats)
    log(f"torch eager: {steps_per_sec:,.0f} steps/s ({torch.get_num_threads()} threads)")

    # sample from the JAX-trained weights, so that both sample the same word lengths
    sample_words = mlp_sampler(config, ds, variables, max_len, g)
    sample_words(5)
    n = sizes.torch_words
    names_per_sec = n / median_seconds(lambda: sample_words(n), sizes.repeats)
    log(f"torch per-word sampling: {names_per_sec:,.0f} names/s")
    return steps_per_sec, names_per_sec, None


def mlp_train_steps(config, ds, g) -> Callable[[int], None]:
    """makemore's MLP with BatchNorm in eager PyTorch, initialised from generator `g`, and a
    function that trains it `n` SGD steps on random batches of the training windows."""
    import torch
    import torch.nn.functional as F

    mc = config.model
    V, T, E, H = ds.vocab.size, mc.block_size, mc.n_embd, mc.n_hidden
    Xtr, Ytr = (torch.from_numpy(np.asarray(a, np.int64)) for a in ds.split("train"))
    C = torch.randn((V, E), generator=g)
    W1 = torch.randn((T * E, H), generator=g) * mc.kaiming_gain / (T * E) ** 0.5
    W2 = torch.randn((H, V), generator=g) * 0.01
    b2 = torch.zeros(V)
    bngain, bnbias = torch.ones((1, H)), torch.zeros((1, H))
    bnmean_running, bnvar_running = torch.zeros((1, H)), torch.ones((1, H))
    params = [C, W1, W2, b2, bngain, bnbias]
    for p in params:
        p.requires_grad = True
    m, eps, lr = mc.bn_momentum, mc.bn_eps, config.learning_rate

    def train_steps(n: int) -> None:
        for _ in range(n):
            ix = torch.randint(0, Xtr.shape[0], (config.batch_size,), generator=g)
            Xb, Yb = Xtr[ix], Ytr[ix]
            hpreact = C[Xb].view(Xb.shape[0], -1) @ W1
            bnmeani = hpreact.mean(0, keepdim=True)
            bnvari = hpreact.var(0, keepdim=True, unbiased=False)
            hpreact = bngain * (hpreact - bnmeani) / torch.sqrt(bnvari + eps) + bnbias
            with torch.no_grad():
                bnmean_running.mul_(1 - m).add_(m * bnmeani)
                bnvar_running.mul_(1 - m).add_(m * bnvari)
            logits = torch.tanh(hpreact) @ W2 + b2
            loss = F.cross_entropy(logits, Yb)
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                p.data += -lr * p.grad
        loss.item()

    return train_steps


def mlp_sampler(config, ds, variables, max_len: int, g) -> Callable[[int], list[list[int]]]:
    """makemore's per-word sampling loop (`torch.multinomial`, one word at a time) on the
    JAX-trained MLP's weights: a function drawing `n` words of at most `max_len` characters."""
    import torch
    import torch.nn.functional as F

    T, eps = config.model.block_size, config.model.bn_eps
    p, stats = variables["params"], variables["batch_stats"]["BatchNorm_0"]
    tt = {
        "C": p["Embed_0"]["embedding"],
        "W1": p["Dense_0"]["kernel"],
        "W2": p["Dense_1"]["kernel"],
        "b2": p["Dense_1"]["bias"],
        "gain": p["BatchNorm_0"]["scale"],
        "bias": p["BatchNorm_0"]["bias"],
        "mean": stats["mean"],
        "var": stats["var"],
    }
    tt = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in tt.items()}
    boundary = ds.vocab.boundary_id

    @torch.no_grad()
    def sample_words(n: int) -> list[list[int]]:
        words = []
        for _ in range(n):
            out, context = [], [boundary] * T
            while True:
                hpreact = tt["C"][torch.tensor([context])].view(1, -1) @ tt["W1"]
                hpreact = (hpreact - tt["mean"]) / torch.sqrt(tt["var"] + eps)
                logits = torch.tanh(hpreact * tt["gain"] + tt["bias"]) @ tt["W2"] + tt["b2"]
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = context[1:] + [ix]
                if ix == boundary:
                    break
                out.append(ix)
                if len(out) >= max_len:
                    break
            words.append(out)
        return words

    return sample_words


def torch_reference_training(
    config, ds, sizes: Sizes, log: Callable[[str], None]
) -> tuple[float | None, None, str | None]:
    """Train steps/s of benchmarks.torch_wavenet on the same data, shapes and batch size as the
    config (no sampling reference). The Transformer and the GRU are timed interleaved with
    the JAX step instead (bench_vs_torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, None, "torch is not installed (pip install -e '.[bench]')"

    X, Y = ds.split("train")
    m = config.model
    steps = max(sizes.torch_steps // 20, 20)
    chars = torch_wavenet_chars_per_sec(
        X, Y, ds.vocab.size, n_embd=m.n_embd, n_hidden=m.n_hidden,
        batch_size=config.batch_size, steps=steps * 10,
    )  # fmt: skip
    steps_per_sec = chars / config.batch_size  # a window is one character
    log(f"torch eager {m.name}: {steps_per_sec:,.1f} steps/s")
    return steps_per_sec, None, None
