"""The WaveNet lecture's hierarchical model in PyTorch eager, as a throughput reference.

The layers are written out as in the lecture (makemore part 5): Embedding, FlattenConsecutive,
Linear without bias (randn / sqrt(fan_in)), BatchNorm1d over (batch, time) with momentum 0.1,
Tanh, ..., and a last Linear scaled by 0.1; plain SGD. `torch_wavenet_chars_per_sec` times its
training steps on context windows, so `benchmarks` can put the JAX forms beside it.

    python -m benchmarks.torch_wavenet [--steps N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _shape_layers(generator):
    """The lecture's Embedding, FlattenConsecutive and Tanh layers (torch tensors, no nn)."""
    import torch

    class Embedding:
        def __init__(self, num, dim):
            self.weight = torch.randn((num, dim), generator=generator)

        def __call__(self, idx):
            return self.weight[idx]

        def parameters(self):
            return [self.weight]

    class FlattenConsecutive:
        def __call__(self, x):
            B, T, C = x.shape
            x = x.view(B, T // 2, 2 * C)
            return x.squeeze(1) if x.shape[1] == 1 else x

        def parameters(self):
            return []

    class Tanh:
        def __call__(self, x):
            return torch.tanh(x)

        def parameters(self):
            return []

    return Embedding, FlattenConsecutive, Tanh


def _weight_layers(generator):
    """The lecture's Linear (randn / sqrt(fan_in)) and BatchNorm1d over (batch, time)."""
    import torch

    class Linear:
        def __init__(self, fan_in, fan_out, bias=True):
            self.weight = torch.randn((fan_in, fan_out), generator=generator) / fan_in**0.5
            self.bias = torch.zeros(fan_out) if bias else None

        def __call__(self, x):
            out = x @ self.weight
            return out + self.bias if self.bias is not None else out

        def parameters(self):
            return [self.weight] + ([] if self.bias is None else [self.bias])

    class BatchNorm1d:
        def __init__(self, dim, eps=1e-5, momentum=0.1):
            self.eps, self.momentum = eps, momentum
            self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
            self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

        def __call__(self, x):
            dim = 0 if x.ndim == 2 else (0, 1)
            xmean = x.mean(dim, keepdim=True)
            xvar = x.var(dim, keepdim=True)
            out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
            with torch.no_grad():
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * xmean.flatten()
                self.running_var = (1 - m) * self.running_var + m * xvar.flatten()
            return out

        def parameters(self):
            return [self.gamma, self.beta]

    return Linear, BatchNorm1d


def _build(vocab_size: int, block_size: int, n_embd: int, n_hidden: int, generator):
    """The lecture's layers for windows of `block_size` (a power of two) and their parameters."""
    import torch

    Embedding, FlattenConsecutive, Tanh = _shape_layers(generator)
    Linear, BatchNorm1d = _weight_layers(generator)
    layers = [Embedding(vocab_size, n_embd)]
    fan_in = n_embd
    for _ in range(block_size.bit_length() - 1):
        layers += [
            FlattenConsecutive(),
            Linear(2 * fan_in, n_hidden, bias=False),
            BatchNorm1d(n_hidden),
            Tanh(),
        ]
        fan_in = n_hidden
    layers.append(Linear(n_hidden, vocab_size))
    with torch.no_grad():
        layers[-1].weight *= 0.1  # last layer less confident: first loss ~ln(vocab_size)
    params = [p for layer in layers for p in layer.parameters()]
    for p in params:
        p.requires_grad = True
    return layers, params


def torch_wavenet_chars_per_sec(
    X_NxT: np.ndarray,
    Y_N: np.ndarray,
    vocab_size: int,
    n_embd: int = 24,
    n_hidden: int = 128,
    batch_size: int = 32,
    steps: int = 200,
    seed: int = 0,
    num_threads: int | None = 1,
) -> float:
    """Characters (= training examples) per second of the lecture's eager PyTorch train step
    (random minibatch of windows, forward, cross-entropy, backward, SGD lr 0.1), timed after
    a few warm-up steps. X_NxT are context windows (T a power of two), Y_N next characters.

    `num_threads`: torch's intra-op threads while timing (None: torch's default). One by
    default: the matrices are too small to split, and on a busy machine idle worker threads
    spinning for work can slow each step many times over."""
    import torch

    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _chars_per_sec(X_NxT, Y_N, vocab_size, n_embd, n_hidden, batch_size, steps, seed)
    finally:
        torch.set_num_threads(previous)


def _chars_per_sec(X_NxT, Y_N, vocab_size, n_embd, n_hidden, batch_size, steps, seed) -> float:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    X = torch.as_tensor(np.asarray(X_NxT), dtype=torch.long)
    Y = torch.as_tensor(np.asarray(Y_N), dtype=torch.long)
    layers, params = _build(vocab_size, X.shape[1], n_embd, n_hidden, generator)

    def step() -> None:
        ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
        x = X[ix]
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Y[ix])
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p += -0.1 * p.grad

    for _ in range(10):  # warm-up: allocator, thread pool
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from jax_makemore import DEFAULT_DATA_PATH
    from jax_makemore.data import Vocab, context_windows, read_words

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--block_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="0: torch's default")
    args = parser.parse_args(argv)
    words = read_words(DEFAULT_DATA_PATH)
    vocab = Vocab.from_words(words)
    X, Y = context_windows(words, vocab, args.block_size)
    threads = args.threads or None
    rate = torch_wavenet_chars_per_sec(X, Y, vocab.size, steps=args.steps, num_threads=threads)
    print(f"torch eager WaveNet (block {args.block_size}): {rate:,.0f} chars/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
