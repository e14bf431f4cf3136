"""PyTorch reference for the `gru` model: makemore.py's `--type gru` (its GRUCell: reset gate,
candidate, update gate; a learned start state, wte, lm_head), trained with makemore's step and
sampled with makemore's `generate` (both in benchmarks.torch_transformer), for the throughput
benchmark. The JAX version is jax_makemore/models/rnn.py.

    python -m benchmarks.torch_gru [--steps N] [--compile]   # random data, prints steps/s

torch is imported inside the functions: it is an optional extra (`pip install -e '.[bench]'`).
Shape letters: B batch, T positions, E n_embd, H n_embd2, V vocab_size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.torch_transformer import TorchTrainer, random_words


def make_gru(vocab_size: int, block_size: int, n_embd: int = 64, n_embd2: int = 64) -> Any:
    """makemore.py's RNN with its GRUCell as a torch.nn.Module: forward(idx_BxT) ->
    logits_BxTxV. PyTorch default init, as makemore.py builds it. `block_size` is what
    makemore's `generate` crops the prefix to (`get_block_size`)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GRUCell(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.xh_to_z = nn.Linear(n_embd + n_embd2, n_embd2)
            self.xh_to_r = nn.Linear(n_embd + n_embd2, n_embd2)
            self.xh_to_hbar = nn.Linear(n_embd + n_embd2, n_embd2)

        def forward(self, x_BxE: torch.Tensor, hprev_BxH: torch.Tensor) -> torch.Tensor:
            # the reset gate wipes channels of the hidden state before the candidate
            xh = torch.cat([x_BxE, hprev_BxH], dim=1)
            r = F.sigmoid(self.xh_to_r(xh))
            xhr = torch.cat([x_BxE, r * hprev_BxH], dim=1)
            hbar = F.tanh(self.xh_to_hbar(xhr))
            # the update gate blends the previous state and the candidate, channel by channel
            z = F.sigmoid(self.xh_to_z(xh))
            return (1 - z) * hprev_BxH + z * hbar

    class RNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block_size = block_size
            self.start = nn.Parameter(torch.zeros(1, n_embd2))  # the learned start state
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.cell = GRUCell()
            self.lm_head = nn.Linear(n_embd2, vocab_size)

        def forward(self, idx_BxT: torch.Tensor) -> torch.Tensor:
            B, T = idx_BxT.shape
            emb_BxTxE = self.wte(idx_BxT)
            hprev = self.start.expand((B, -1))
            hiddens = []
            for i in range(T):
                hprev = self.cell(emb_BxTxE[:, i, :], hprev)
                hiddens.append(hprev)
            return self.lm_head(torch.stack(hiddens, 1))

    return RNN()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--vocab_size", type=int, default=27)
    parser.add_argument("--seq_len", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="under torch.compile")
    args = parser.parse_args(argv)
    X, Y = random_words(1000, args.vocab_size, args.seq_len)
    model = make_gru(args.vocab_size, args.seq_len)
    trainer = TorchTrainer(model, X, Y, compile=args.compile)
    trainer.run(10)  # warm-up (and compilation)
    t0 = time.perf_counter()
    trainer.run(args.steps)
    print(
        f"torch gru{' (compiled)' if args.compile else ''}: "
        f"{args.steps / (time.perf_counter() - t0):,.1f} steps/s"
    )


if __name__ == "__main__":
    main()
