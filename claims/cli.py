"""The notes-claims command: every claim in the notes' order, then the report."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import claims
import jax_makemore
from claims.batchnorm import bn_evaluations, claim_b1, claim_batch_of_one, claim_running_stats
from claims.bigram import claim_bigram_floor, claim_keepdim, claim_l2, claim_one_hot
from claims.budget import FULL, QUICK
from claims.context import claim_block_size, claim_embeddings, claim_name_length
from claims.helpers import register_helpers
from claims.initialisation import claim_init_bn, claim_kaiming
from claims.minibatch import claim_examples_seen, claim_minibatch
from claims.report import provenance, write_report
from claims.runner import Runner

CLAIMS: tuple[Callable[[Runner], dict[str, Any]], ...] = (
    claim_bigram_floor, claim_one_hot, claim_l2, claim_keepdim, claim_block_size,
    claim_embeddings, claim_kaiming, claim_init_bn,
)  # fmt: skip


def run_all(run: Runner) -> list[dict[str, Any]]:
    """Every claim, in the notes' order (the BatchNorm evaluations are shared by two)."""
    claims = [f(run) for f in CLAIMS]
    ev = bn_evaluations(run)
    claims += [claim_running_stats(run, ev), claim_batch_of_one(run, ev)]
    claims += [claim_minibatch(run), claim_examples_seen(run), claim_name_length(run),
               claim_b1(run)]  # fmt: skip
    return claims


def main(argv: Sequence[str] | None = None) -> int:
    """Run every claim's experiment, write DIR/claims.json and DIR/claims.md, print verdicts."""
    parser = argparse.ArgumentParser(description=claims.__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(jax_makemore.DEFAULT_DATA_PATH))
    parser.add_argument("--quick", action="store_true", help="fewer steps and seeds (minutes)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep finished runs under --out (made with the same mode and data: not checked)",
    )
    parser.add_argument("--out", required=True, help="folder for claims.md, claims.json, runs/")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    register_helpers()
    t0 = time.perf_counter()
    run = Runner(out, Path(args.data).resolve(), QUICK if args.quick else FULL, args.reuse)
    found = run_all(run)
    write_report(out, found, provenance(run, time.perf_counter() - t0, args.quick))
    for c in found:
        print(f"{c['title']}: {c['verdict']} ({c['key_figure']})")
    print(f"-> {out / 'claims.md'}")
    return 0
