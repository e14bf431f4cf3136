"""PyTorch reference for the `transformer` model: makemore.py's Transformer (GPT-2 block,
PyTorch default init, no dropout), makemore's training step (AdamW on padded words; eager or
under `torch.compile`) and makemore's `generate`, for the throughput benchmark. The step and
`generate` serve every makemore model (benchmarks.torch_gru).

    python -m benchmarks.torch_transformer [--steps N]   # random data, prints steps/s

torch is imported inside the functions: it is an optional extra (`pip install -e '.[bench]'`).
Shape letters: N words, L padded word length, B batch, T positions, C n_embd, V vocab_size.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def make_gpt(vocab_size: int, seq_len: int, n_layer: int, n_head: int, n_embd: int) -> Any:
    """makemore.py's Transformer as a torch.nn.Module: forward(idx_BxT) -> logits_BxTxV."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            causal = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
            self.register_buffer("causal_TxT", causal)

        def forward(self, x_BxTxC: torch.Tensor) -> torch.Tensor:
            B, T, C = x_BxTxC.shape
            D = C // n_head
            q, k, v = (
                t.view(B, T, n_head, D).transpose(1, 2)  # B x H x T x D
                for t in self.c_attn(x_BxTxC).split(C, dim=2)
            )
            att_BxHxTxT = (q @ k.transpose(-2, -1)) / math.sqrt(D)
            att_BxHxTxT = att_BxHxTxT.masked_fill(~self.causal_TxT[:T, :T], float("-inf"))
            y_BxHxTxD = F.softmax(att_BxHxTxT, dim=-1) @ v
            return self.c_proj(y_BxHxTxD.transpose(1, 2).reshape(B, T, C))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.c_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x_BxTxC: torch.Tensor) -> torch.Tensor:
            x_BxTxC = x_BxTxC + self.attn(self.ln_1(x_BxTxC))
            # makemore's NewGELU is the tanh approximation
            h = F.gelu(self.c_fc(self.ln_2(x_BxTxC)), approximate="tanh")
            return x_BxTxC + self.c_proj(h)

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(seq_len, n_embd)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

        def forward(self, idx_BxT: torch.Tensor) -> torch.Tensor:
            T = idx_BxT.shape[1]
            x_BxTxC = self.wte(idx_BxT) + self.wpe(torch.arange(T))
            for block in self.h:
                x_BxTxC = block(x_BxTxC)
            return self.lm_head(self.ln_f(x_BxTxC))

    return GPT()


class TorchTrainer:
    """makemore.py's training step on one model: random batches of `batch_size` padded words
    (its DataLoader's shuffled rows), cross-entropy ignoring targets of -1, and
    AdamW(lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01) over every parameter, as makemore.py
    sets it. With `compile`, the forward and the loss go through `torch.compile` (its backward
    compiles with them through AOTAutograd); the optimizer step stays eager, as a user who wraps
    the model in `torch.compile` runs it. `run(n)` trains n steps and returns the targets it
    trained on (characters: each word's letters and its end)."""

    def __init__(
        self,
        model: Any,
        X_NxL: np.ndarray,
        Y_NxL: np.ndarray,
        *,
        batch_size: int = 32,
        lr: float = 5e-4,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        import torch
        import torch.nn.functional as F

        self.model = model
        self.X = torch.from_numpy(np.asarray(X_NxL, np.int64))
        self.Y = torch.from_numpy(np.asarray(Y_NxL, np.int64))
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01
        )

        def loss_fn(X_BxT: torch.Tensor, Y_BxT: torch.Tensor) -> torch.Tensor:
            logits_BxTxV = model(X_BxT)
            V = logits_BxTxV.shape[-1]
            return F.cross_entropy(logits_BxTxV.view(-1, V), Y_BxT.view(-1), ignore_index=-1)

        self.loss_fn = torch.compile(loss_fn) if compile else loss_fn

    def run(self, steps: int) -> int:
        """Train `steps` steps; the targets trained on (one host sync, at the end)."""
        import torch

        seen = torch.zeros((), dtype=torch.int64)
        for _ in range(steps):
            ix = torch.randint(0, self.X.shape[0], (self.batch_size,), generator=self.gen)
            X_BxT, Y_BxT = self.X[ix], self.Y[ix]
            loss = self.loss_fn(X_BxT, Y_BxT)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            seen += (Y_BxT >= 0).sum()
        loss.item()
        return int(seen)


def makemore_generate(
    model: Any, num: int, max_new_tokens: int, block_size: int, start: int, seed: int = 0
) -> Any:
    """makemore.py's `generate` as `print_samples` calls it: `num` rows starting with the start
    token, `max_new_tokens` (its longest word) steps each re-running the model on the whole
    prefix cropped to `block_size` and drawing with `torch.multinomial` from the last
    position's softmax, under `torch.no_grad`, eager. No row stops early (makemore crops at the
    end token afterwards). Returns idx_NxG."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    idx = torch.full((num, 1), start, dtype=torch.long)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= block_size else idx[:, -block_size:]
            logits = model(idx_cond)[:, -1, :]
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1, generator=gen)
            idx = torch.cat((idx, idx_next), dim=1)
    return idx


def torch_transformer_steps_per_sec(
    X_NxL: np.ndarray,
    Y_NxL: np.ndarray,
    vocab_size: int,
    seq_len: int,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 64,
    batch_size: int = 32,
    lr: float = 5e-4,
    steps: int = 200,
    seed: int = 0,
    warmup: int = 10,
) -> float:
    """Train steps per second of makemore's Transformer in PyTorch eager on this CPU (float32,
    torch's current thread count), with makemore's step (`TorchTrainer`). `warmup` untimed
    steps come first."""
    import torch

    torch.manual_seed(seed)
    model = make_gpt(vocab_size, seq_len, n_layer, n_head, n_embd)
    trainer = TorchTrainer(model, X_NxL, Y_NxL, batch_size=batch_size, lr=lr, seed=seed)
    trainer.run(warmup)
    t0 = time.perf_counter()
    trainer.run(steps)
    return steps / (time.perf_counter() - t0)


def random_words(
    n: int, vocab_size: int, seq_len: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """X_NxL, Y_NxL in the `sequences` layout for random words of 1..seq_len-1 characters
    (boundary token vocab_size - 1)."""
    rng = np.random.default_rng(seed)
    boundary = vocab_size - 1
    X = np.full((n, seq_len), boundary, np.int64)
    Y = np.full((n, seq_len), -1, np.int64)
    for i in range(n):
        ids = rng.integers(0, boundary, rng.integers(1, seq_len))
        X[i, 1 : 1 + len(ids)] = ids
        Y[i, : len(ids)] = ids
        Y[i, len(ids)] = boundary
    return X, Y


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--vocab_size", type=int, default=27)
    parser.add_argument("--seq_len", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: its own)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    X, Y = random_words(1000, args.vocab_size, args.seq_len)
    rate = torch_transformer_steps_per_sec(X, Y, args.vocab_size, args.seq_len, steps=args.steps)
    print(f"torch eager transformer: {rate:,.1f} steps/s")


if __name__ == "__main__":
    main()
