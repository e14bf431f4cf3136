"""The makemore notes, checked: every testable claim measured by one command, with a verdict.

    python scripts/notes_claims.py [--data PATH] [--quick] [--reuse] --out DIR

For each claim of `makemore-notes.md` (the notes this project was built from) it runs the
project's own commands (`python -m jax_makemore.sweep / train / sample`, 4 seeds in the full
run wherever settings are compared), measures what the claim is about, and writes
`DIR/claims.json` and `DIR/claims.md`: the notes' words, the commands, the figures as
mean ± std over seeds, and a verdict (holds, partly holds, does not hold) with its reason.
`--quick` runs the same experiments with fewer steps and seeds (a first look, and the tests);
`--reuse` keeps finished sweeps under DIR and only redoes the analysis.

Verdict rule. A claim is split into parts. A claimed *difference* holds when the measured
difference has the claimed sign and exceeds twice its spread over seeds; a claimed *figure*
("~2.42", "≈ 0.63", "almost the same") holds when the measurement lies within a stated
tolerance of it. A claim holds when every part holds, does not hold when none does, and
partly holds otherwise.

Helper models that exist only for a claim live here: the neural bigram fed the raw character
index as one number (`RawIntBigram`), the third lecture's 5-layer tanh MLP (`DeepTanhMLP`) and
an MLP that keeps its hidden bias before BatchNorm (`BiasBatchNormMLP`). The package has no
way to add a model from outside `jax_makemore/models/`, so `register_helpers` adds their specs
to the model registry at run time, and the sweep command loads them through small config files
that this script writes under DIR/configs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

import jax_makemore
from jax_makemore.config import resolve
from jax_makemore.data import dataset_from_config
from jax_makemore.layers import TANH_GAIN, BatchNorm, kaiming_normal
from jax_makemore.models import ModelSpec, register_model
from jax_makemore.models.bigram import count_table

HOLDS, PARTLY, FAILS = "holds", "partly holds", "does not hold"
VERDICTS = (HOLDS, PARTLY, FAILS)
VOWELS = "aeiou"
RARE = "qxj"
SCRIPT = Path(__file__).resolve()
#: Written into each run's folder: the seconds its command took.
SECONDS_FILE = "seconds.json"
PACKAGE_ROOT = Path(jax_makemore.__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Budgets: the full run and --quick


@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps and seeds of every experiment. The full run is sized for about 40 minutes on a
    2-core CPU shared with other jobs; --quick for under 5 minutes (the same experiments and
    code paths, fewer steps, seeds and block sizes)."""

    seeds: int
    mlp_steps: int  # the notes' MLP recipe, SGD 0.1 then 0.01 from half-way
    deep_steps: int  # the 5-layer tanh MLP
    bigram_steps: int  # full-batch gradient descent of the bigrams, as in the first lecture
    equal_steps: int  # the mini-batch comparison at equal steps (the full split is costly)
    num_samples: int  # sampled words per member for the name-length claim
    raw_lrs: tuple[float, ...]  # learning rates tried for the raw-integer bigram
    block_sizes: tuple[int, ...]  # must include 3 and 8


FULL = Budget(4, 20_000, 10_000, 300, 20, 2_000, (0.01, 0.1, 1.0), tuple(range(1, 9)))
QUICK = Budget(2, 300, 200, 10, 2, 200, (0.1,), (1, 3, 8))


# ---------------------------------------------------------------------------------------------
# Helper models (only for claims; not part of the package)


class RawIntBigram(nn.Module):
    """The 'lie about distances' bigram: logits = x * w + b with x the previous character's
    index as one float, instead of one_hot(x) @ W. W ~ N(0, 1) as the notes' bigram."""

    vocab_size: int
    block_size: int = 1

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        x_Bx1 = idx_BxT[:, -1:].astype(jnp.float32)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(1.0))(x_Bx1)


class DeepTanhMLP(nn.Module):
    """The third lecture's deep net: embeddings, `n_layer` x (Linear -> tanh) of `n_hidden`
    units with Kaiming init of gain `gain` and zero biases, then a small output layer. Sows
    every pre-activation (`preact_L`) and tanh output (`h_L`)."""

    vocab_size: int
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 100
    n_layer: int = 5
    gain: float = TANH_GAIN

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        B, T = idx_BxT.shape
        emb_BxTxE = nn.Embed(
            self.vocab_size, self.n_embd, embedding_init=nn.initializers.normal(1.0)
        )(idx_BxT)
        h_BxH = emb_BxTxE.reshape(B, T * self.n_embd)
        for layer in range(self.n_layer):
            preact_BxH = nn.Dense(self.n_hidden, kernel_init=kaiming_normal(self.gain))(h_BxH)
            self.sow("intermediates", f"preact_{layer}", preact_BxH)
            h_BxH = jnp.tanh(preact_BxH)
            self.sow("intermediates", f"h_{layer}", h_BxH)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.01))(h_BxH)


class BiasBatchNormMLP(nn.Module):
    """The notes' MLP before `b1` was removed: Dense *with* bias -> BatchNorm -> tanh -> Dense."""

    vocab_size: int
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 200

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        B, T = idx_BxT.shape
        emb = nn.Embed(self.vocab_size, self.n_embd, embedding_init=nn.initializers.normal(1.0))
        x_BxTE = emb(idx_BxT).reshape(B, T * self.n_embd)
        preact_BxH = nn.Dense(self.n_hidden, kernel_init=kaiming_normal(), name="hidden")(x_BxTE)
        h_BxH = jnp.tanh(BatchNorm()(preact_BxH, train))
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.01))(h_BxH)


HELPER_SPECS = (
    ModelSpec("notes_raw_bigram", RawIntBigram, "windows"),
    ModelSpec("notes_deep_tanh", DeepTanhMLP, "windows"),
)


def register_helpers() -> None:
    """Add the helper models to the package's model registry (in this process)."""
    for spec in HELPER_SPECS:
        register_model(spec)


def helper_config(name: str) -> ml_collections.ConfigDict:
    """The config a helper model trains with: the raw-integer bigram with the `bigram`
    config's recipe (full batch, L2 0.01, constant learning rate), the deep MLP with the
    `mlp` config's (batches of 32, SGD 0.1 then 0.01)."""
    register_helpers()
    base = "bigram" if name == "notes_raw_bigram" else "mlp"
    config, _ = resolve(base, [("model.name", name)])
    return config


def write_helper_configs(out: Path) -> dict[str, Path]:
    """Config files `--config PATH` can take: each loads this script and its helper model."""
    folder = out / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in HELPER_SPECS:
        path = folder / f"{spec.name}.py"
        path.write_text(
            '"""Written by scripts/notes_claims.py: a helper model of that script."""\n'
            "import importlib.util\nimport sys\n\n"
            f'_spec = importlib.util.spec_from_file_location("notes_claims", {str(SCRIPT)!r})\n'
            "_mod = importlib.util.module_from_spec(_spec)\n"
            'sys.modules.setdefault("notes_claims", _mod)\n'
            "_spec.loader.exec_module(_mod)\n\n\n"
            f"def get_config():\n    return _mod.helper_config({spec.name!r})\n",
            encoding="utf-8",
        )
        paths[spec.name] = path
    return paths


# ---------------------------------------------------------------------------------------------
# The verdict rule


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: Sequence[float] | float, digits: int = 4) -> str:
    """'mean ± std' over seeds (or one number)."""
    if isinstance(values, int | float):
        return f"{values:.{digits}f}"
    m, s = mean_sd(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def difference_part(
    text: str, a: Sequence[float], b: Sequence[float], sign: int, paired: bool = False
) -> dict[str, Any]:
    """Part 'a - b has sign `sign`': holds when mean(a - b) has that sign and its size exceeds
    twice the spread over seeds: sqrt(sd_a^2 + sd_b^2), or the sd of the per-seed differences
    when `paired` (a and b measured on the same seeds' models)."""
    if paired:
        diff, spread = mean_sd([x - y for x, y in zip(a, b, strict=True)])
    else:
        (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
        diff, spread = ma - mb, math.hypot(sa, sb)
    holds = diff * sign > 0 and abs(diff) > 2 * spread
    return {
        "part": text,
        "kind": "difference",
        "difference": diff,
        "spread": spread,
        "holds": bool(holds),
        "measured": f"difference {diff:+.4f}, 2 × spread {2 * spread:.4f}",
    }


def figure_part(text: str, measured: float, claimed: float, tolerance: float) -> dict[str, Any]:
    """Part 'the figure is about `claimed`': holds when |measured - claimed| <= tolerance."""
    holds = abs(measured - claimed) <= tolerance
    return {
        "part": text,
        "kind": "figure",
        "value": measured,
        "claimed": claimed,
        "tolerance": tolerance,
        "holds": bool(holds),
        "measured": f"{measured:.4f} against {claimed:g} (tolerance {tolerance:g})",
    }


def bound_part(text: str, measured: float, bound: float, below: bool) -> dict[str, Any]:
    """Part 'the figure is below (or above) `bound`': a stated threshold, not a difference."""
    holds = measured < bound if below else measured > bound
    side = "<" if below else ">"
    return {
        "part": text,
        "kind": "bound",
        "value": measured,
        "bound": bound,
        "holds": bool(holds),
        "measured": f"{measured:.4g} (needs {side} {bound:g})",
    }


def combine(parts: Sequence[dict[str, Any]]) -> str:
    """holds when every part holds, does not hold when none does, else partly holds."""
    if not parts:
        raise ValueError("a claim needs at least one part")
    held = sum(bool(p["holds"]) for p in parts)
    return HOLDS if held == len(parts) else FAILS if held == 0 else PARTLY


def claim(
    key: str, title: str, quote: str, commands: list[str], figures: dict[str, Any],
    table: list[list[str]], parts: list[dict[str, Any]], why: str,
) -> dict[str, Any]:  # fmt: skip
    """One claim's record for claims.json / claims.md; the verdict follows from the parts."""
    return {
        "key": key,
        "title": title,
        "quote": quote,
        "commands": commands,
        "figures": figures,
        "table": table,
        "parts": parts,
        "verdict": combine(parts),
        "why": why,
    }


# ---------------------------------------------------------------------------------------------
# Exact demonstrations


def keepdim_tables(counts_VxV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, wrong) row normalisations of a count table: `counts / counts.sum(1, keepdims=True)`
    and `counts / counts.sum(1)`, whose (V,) sums broadcast as a row, so entry (i, j) is divided
    by row j's sum instead of row i's (NumPy, JAX and PyTorch broadcast alike)."""
    counts = np.asarray(counts_VxV, np.float64)
    return counts / counts.sum(1, keepdims=True), counts / counts.sum(1)


def tanh_std_exact(points: int = 200) -> float:
    """std of tanh(z), z ~ N(0, 1), by Gauss-Hermite quadrature (tanh is odd: the mean is 0)."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    return float(np.sqrt(np.sum(w * np.tanh(z) ** 2) / np.sum(w)))


def tanh_std_sampled(n: int = 10_000_000, seed: int = 0) -> float:
    """std of tanh of `n` draws of N(0, 1), in float32 as a network computes it."""
    return float(jnp.std(jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (n,)))))


def b1_gradient(X_BxT: jax.Array, Y_B: jax.Array, vocab_size: int, seed: int = 0) -> dict:
    """Gradients of `BiasBatchNormMLP` on one batch in float32, with a random non-zero b1:
    max |dL/db1|, the RMS of every other gradient entry, their ratio, and the largest change of
    the logits when b1 is shifted by 5 (BatchNorm subtracts any constant shift)."""
    model = BiasBatchNormMLP(vocab_size=vocab_size, block_size=X_BxT.shape[1])
    variables = model.init(jax.random.PRNGKey(seed), X_BxT, train=False)
    params = jax.tree.map(lambda p: p, variables["params"])
    b1 = jax.random.normal(jax.random.PRNGKey(seed + 1), params["hidden"]["bias"].shape)
    params["hidden"]["bias"] = b1

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, X_BxT, train=True, mutable=["batch_stats"]
        )
        return jnp.mean(
            jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, Y_B[:, None], 1)[:, 0]
        )

    grads = jax.grad(loss)(params)
    g_b1 = jnp.abs(grads["hidden"]["bias"]).max()
    others = [
        g
        for p, g in jax.tree_util.tree_leaves_with_path(grads)
        if "hidden" not in str(p) or "kernel" in str(p)
    ]
    rms = jnp.sqrt(jnp.mean(jnp.concatenate([jnp.ravel(g) ** 2 for g in others])))
    shifted = jax.tree.map(lambda p: p, params)
    shifted["hidden"]["bias"] = b1 + 5.0

    def logits(p):
        return model.apply({**variables, "params": p}, X_BxT, train=True, mutable=["batch_stats"])[
            0
        ]

    shift = jnp.abs(logits(shifted) - logits(params)).max()
    return {
        "max_abs_grad_b1": float(g_b1),
        "rms_other_grads": float(rms),
        "ratio": float(g_b1 / rms),
        "max_logit_change_b1_plus_5": float(shift),
    }


# ---------------------------------------------------------------------------------------------
# Running the project's commands


class Runner:
    """Runs the package's commands as subprocesses (the package this script imports, so a
    checkout or a snapshot of it is used consistently), keeps each command line for the report,
    and caches sweeps by name so that several claims can share one."""

    def __init__(self, out: Path, data: Path, budget: Budget, reuse: bool) -> None:
        self.out, self.data, self.budget, self.reuse = out, data, budget, reuse
        self.records: dict[str, dict[str, Any]] = {}
        self.helpers = write_helper_configs(out)

    def env(self) -> dict[str, str]:
        """The environment of a command: this script's package first on PYTHONPATH."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def call(self, args: list[str]) -> str:
        """Run `python -m jax_makemore.<args>`; its stdout, or a RuntimeError with its stderr."""
        proc = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, cwd=PACKAGE_ROOT,
            env=self.env(),
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def call_twice(self, args: list[str]) -> str:
        """`call`, once more from scratch if it fails: on a heavily loaded CPU, XLA's
        cross-device rendezvous of a 2-device sweep can time out (40 s) and abort the process;
        the runs are deterministic, so a second attempt gives the same results."""
        try:
            return self.call(args)
        except RuntimeError as err:
            first = str(err).splitlines()
            print(f"  failed, trying once more: {first[0][:200]}", file=sys.stderr, flush=True)
            return self.call(args)

    def loop(self, num_steps: int) -> dict[str, str]:
        """The config keys every run sets: its steps, one evaluation and checkpoint at the end."""
        return {
            "num_steps": str(num_steps),
            "eval_every": str(num_steps),
            "checkpoint_every": str(num_steps),
            "steps_per_call": str(min(1000, num_steps)),
            "num_samples": "0",
            "data_path": str(self.data),
        }

    def shown(self, module: str, config: str, flags: list[str]) -> str:
        """The command line as the report prints it: DIR for the output folder, and no
        `--config.data_path` when it is the shipped file (the default)."""
        if self.data == Path(jax_makemore.DEFAULT_DATA_PATH).resolve():
            flags = [f for f in flags if not f.startswith("--config.data_path=")]
        config = config.replace(str(self.out), "DIR")
        rest = " ".join(f.replace(str(self.out), "DIR") for f in flags)
        return f"python -m jax_makemore.{module} --config {config} {rest}"

    def sweep(self, name: str, config: str, swept: dict[str, str], keys: dict[str, str]) -> dict:
        """`python -m jax_makemore.sweep` over `swept` x seeds 0..seeds-1 into DIR/runs/<name>;
        returns sweep.json with the command line under 'command'."""
        if name in self.records:
            return self.records[name]
        workdir = self.out / "runs" / name
        swept = {**swept, "seed": f"0:{self.budget.seeds}"}
        flags = [f"--sweep.{k}={v}" for k, v in swept.items()]
        flags += [f"--config.{k}={v}" for k, v in keys.items()]
        path = workdir / "sweep.json"
        done = path.is_file() and all(
            m["status"] in ("done", "diverged") for m in json.loads(path.read_text())["members"]
        )
        if not (self.reuse and done):
            t0 = time.perf_counter()
            args = ["jax_makemore.sweep", "--config", config, "--workdir", str(workdir), *flags]
            self.call_twice([*args, "--overwrite"])
            seconds = time.perf_counter() - t0
            (workdir / SECONDS_FILE).write_text(json.dumps({"seconds": seconds}) + "\n")
            print(f"  sweep {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
        record = json.loads(path.read_text())
        record["command"] = self.shown("sweep", config, flags + [f"--workdir DIR/runs/{name}"])
        record["root"] = str(workdir)
        self.records[name] = record
        return record

    def train(self, name: str, config: str, keys: dict[str, str]) -> dict[str, Any]:
        """`python -m jax_makemore.train` into DIR/runs/<name>; results.json plus 'command'."""
        workdir = self.out / "runs" / name
        flags = [f"--config.{k}={v}" for k, v in keys.items()]
        if not (self.reuse and (workdir / "results.json").is_file()):
            t0 = time.perf_counter()
            self.call(["jax_makemore.train", "--config", config, "--workdir", str(workdir),
                       "--overwrite", *flags])  # fmt: skip
            seconds = time.perf_counter() - t0
            (workdir / SECONDS_FILE).write_text(json.dumps({"seconds": seconds}) + "\n")
        results = json.loads((workdir / "results.json").read_text())
        results["command"] = self.shown("train", config, flags + [f"--workdir DIR/runs/{name}"])
        return results

    def sample(self, workdir: Path, num: int) -> list[str]:
        """`python -m jax_makemore.sample --workdir W --num N --seed 0`: the words."""
        out = self.call(["jax_makemore.sample", "--workdir", str(workdir), "--num", str(num),
                         "--seed", "0"])  # fmt: skip
        return [w for w in out.splitlines() if w]


def members(record: dict[str, Any], **where: Any) -> list[dict[str, Any]]:
    """The finished members of a sweep whose overrides match `where` (a dotted key is written
    with '__': model__block_size=3), in seed order, each with its 'dir'."""
    want = {k.replace("__", "."): v for k, v in where.items()}

    def match(m: dict) -> bool:
        for key, value in want.items():
            got = m["overrides"][key]
            if isinstance(value, float) and not math.isclose(got, value, rel_tol=1e-6):
                return False
            if not isinstance(value, float) and got != value:
                return False
        return m["status"] == "done"

    found = sorted((m for m in record["members"] if match(m)), key=lambda m: m["overrides"]["seed"])
    return [{**m, "dir": Path(record["root"]) / m["workdir"]} for m in found]


def losses(record: dict[str, Any], split: str = "val", **where: Any) -> list[float]:
    """One split's loss of each matching finished member, in seed order."""
    return [m["loss"][split] for m in members(record, **where)]


def load_member(member: dict[str, Any]) -> Any:
    """The trained model of a member (restore.load_trained; helpers registered first)."""
    from jax_makemore.restore import load_trained

    register_helpers()
    return load_trained(member["dir"])


def dataset(data: Path, block_size: int, split_fractions: str | None = None) -> Any:
    """The package's dataset of the `mlp` config on `data` with windows of `block_size`."""
    keys = [("data_path", str(data)), ("model.block_size", str(block_size))]
    if split_fractions:
        keys.append(("split_fractions", split_fractions))
    config, _ = resolve("mlp", keys)
    return dataset_from_config(config)


def seeds_of(budget: Budget) -> str:
    """'seeds 0–3': the seeds of a budget, for table rows."""
    return f"seeds 0–{budget.seeds - 1}"


def part(text: str, holds: bool, measured: str) -> dict[str, Any]:
    """A part decided by an exact check (an identity, a NaN, a threshold on one number)."""
    return {"part": text, "kind": "check", "holds": bool(holds), "measured": measured}


def stat_difference_part(text: str, diff: float, spread: float, sign: int) -> dict[str, Any]:
    """`difference_part` from an already aggregated difference and spread."""
    holds = diff * sign > 0 and abs(diff) > 2 * spread
    return {
        "part": text,
        "kind": "difference",
        "difference": diff,
        "spread": spread,
        "holds": bool(holds),
        "measured": f"difference {diff:+.4f}, 2 × spread {2 * spread:.4f}",
    }


# ---------------------------------------------------------------------------------------------
# The claims: one function each, returning its record


def claim_bigram_floor(run: Runner) -> dict[str, Any]:
    """The whole-file count table's NLL against the notes' ~2.42, and no trained bigram below
    the count table on the words it is counted from."""
    b = run.budget
    floor = run.train("bigram_floor", "bigram_counts",
                      {"split_fractions": "(1.0,0.0,0.0)", "model.smoothing": "0",
                       "data_path": str(run.data)})  # fmt: skip
    whole = floor["loss"]["train"]
    ds = dataset(run.data, 1)
    X, Y = ds.split("train")
    counts = np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size))
    probs = counts / counts.sum(1, keepdims=True)
    train_floor = float(-np.mean(np.log(probs[X[:, -1], Y])))
    l2 = l2_sweep(run)
    neural = losses(l2, "train", l2_mean=0.0)
    parts = [
        figure_part("the count bigram's NLL on the whole file is ~2.42", whole, 2.42, 0.005),
        difference_part("no trained bigram gets below the count table on the words it is "
                        "counted from (neural bigram, no L2, train split)", neural,
                        [train_floor], +1),
    ]  # fmt: skip
    table = [
        ["model", "words", "NLL"],
        ["count table, no smoothing", "whole file", fmt(whole)],
        ["count table, no smoothing", "train split", fmt(train_floor)],
        [f"neural bigram, no L2 ({b.bigram_steps} full-batch steps, {seeds_of(b)})",
         "train split", fmt(neural)],
    ]  # fmt: skip
    why = (
        f"the floor of this file is {whole:.4f}, {whole - 2.42:+.4f} from the notes' ~2.42 "
        "(the lectures' own file gives 2.454 too); the trained bigram stays "
        f"{parts[1]['difference']:+.4f} from the count table on the words it is counted from, "
        "whose maximum-likelihood fit the count table is"
    )
    return claim(
        "bigram_floor",
        "The bigram floor",
        "our lowest negative log-likelihood will be ~2.42 … the best possible for any bigram "
        "model on this dataset",
        [floor["command"], l2["command"]],
        {"whole_file": whole, "train_split": train_floor, "neural_train": neural},
        table,
        parts,
        why,
    ) | {"key_figure": f"floor {whole:.4f} (notes: ~2.42, off by {whole - 2.42:+.3f})"}


def l2_sweep(run: Runner) -> dict[str, Any]:
    """The notes' neural bigram (config `bigram`) at L2 strength 0, 0.01, 0.1 and 1."""
    return run.sweep("bigram_l2", "bigram", {"l2_mean": "0,0.01,0.1,1"},
                     run.loop(run.budget.bigram_steps) | {"steps_per_call": "100"})  # fmt: skip


def claim_one_hot(run: Runner) -> dict[str, Any]:
    """One-hot input against the raw character index as one number (best of a few rates)."""
    b = run.budget
    onehot = losses(l2_sweep(run), "val", l2_mean=0.01)
    raw = run.sweep("raw_bigram", str(run.helpers["notes_raw_bigram"]),
                    {"learning_rate": ",".join(str(x) for x in b.raw_lrs)},
                    run.loop(b.bigram_steps) | {"steps_per_call": "100"})  # fmt: skip
    rows, best = [["input", "learning rate", "members done", "val"]], None
    rows.append(["one-hot (bigram config)", "50", str(len(onehot)), fmt(onehot)])
    for lr in b.raw_lrs:
        vals = losses(raw, "val", learning_rate=float(lr))
        rows.append(["raw index x (logits = x·w + b)", f"{lr:g}", str(len(vals)),
                     fmt(vals) if vals else "diverged"])  # fmt: skip
        if len(vals) == b.seeds and (
            best is None or statistics.mean(vals) < statistics.mean(best[1])
        ):
            best = (lr, vals)
    if best is None:
        raise RuntimeError("every learning rate of the raw-integer bigram diverged")
    parts = [difference_part(f"raw integers do worse on val than one-hot (raw at its best rate, "
                             f"{best[0]:g})", best[1], onehot, +1)]  # fmt: skip
    gap = statistics.mean(best[1]) - statistics.mean(onehot)
    why = (
        f"the raw index's best val is {statistics.mean(best[1]):.4f}, {gap:+.4f} from one-hot's "
        f"{statistics.mean(onehot):.4f}: logits linear in the index x can only rise or fall "
        "with x, they cannot give each character its own row of probabilities"
    )
    return claim(
        "one_hot",
        "One-hot vs raw integers",
        "never feed raw integers that represent categories into a neural net and multiply them "
        "by weights -- you are lying to the network about distances that don't exist!!",
        [l2_sweep(run)["command"], raw["command"]],
        {"one_hot_val": onehot, "raw_val": best[1], "raw_learning_rate": best[0]},
        rows,
        parts,
        why,
    ) | {"key_figure": f"val one-hot {fmt(onehot)} vs raw {fmt(best[1])}"}


def bigram_probs(member: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(softmax rows, W) of a trained neural bigram member."""
    W = np.asarray(load_member(member).variables["params"]["W"], np.float64)
    z = W - W.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True), W


def weighted_kl(counts: np.ndarray, probs: np.ndarray) -> float:
    """sum_i f_i KL(P_i || Q_i): the count table's rows P (f_i: how often row i is the context)
    against the model's rows Q, in nats per character."""
    P = counts / counts.sum(1, keepdims=True)
    f = counts.sum(1) / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(P > 0, P * (np.log(P) - np.log(probs)), 0.0)
    return float(np.sum(f * terms.sum(1)))


def claim_l2(run: Runner) -> dict[str, Any]:
    """KL of the bigram's rows from the count table, and the weights' RMS, per L2 strength."""
    record = l2_sweep(run)
    ds = dataset(run.data, 1)
    X, Y = ds.split("train")
    counts = np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size), np.float64)
    kl, rms, val = {}, {}, {}
    rows = [["L2 strength", "KL(count table ‖ model), nats/char", "RMS of W", "val"]]
    for strength in (0.0, 0.01, 0.1, 1.0):
        found = members(record, l2_mean=strength)
        pairs = [bigram_probs(m) for m in found]
        kl[strength] = [weighted_kl(counts, p) for p, _ in pairs]
        rms[strength] = [float(np.sqrt(np.mean(W**2))) for _, W in pairs]
        val[strength] = [m["loss"]["val"] for m in found]
        rows.append([f"{strength:g}", fmt(kl[strength]), fmt(rms[strength], 3), fmt(val[strength])])
    kl_change = statistics.mean(kl[0.01]) - statistics.mean(kl[0.0])
    parts = [
        difference_part("L2 0.01 gives smaller weights than no L2 (RMS of W)", rms[0.01],
                        rms[0.0], -1, paired=True),
        bound_part("… much smaller: by at least a factor 1.5 (RMS without L2 / with 0.01)",
                   statistics.mean(rms[0.0]) / statistics.mean(rms[0.01]), 1.5, below=False),
        bound_part("with L2 0.01 the probabilities stay almost the same: its KL from the count "
                   "table exceeds no-L2's by less than 0.01 nats", kl_change, 0.01, below=True),
    ]  # fmt: skip
    ratio = statistics.mean(rms[0.0]) / statistics.mean(rms[0.01])
    why = (
        f"at 0.01 the weights' RMS is {ratio:.2f}x smaller than without L2 and the rows' KL "
        f"from the count table changes by {kl_change:+.4f} nats; at 0.1 and 1 the RMS is "
        f"{statistics.mean(rms[0.1]):.3f} and {statistics.mean(rms[1.0]):.3f}, the KL "
        f"{statistics.mean(kl[0.1]):.4f} and {statistics.mean(kl[1.0]):.4f} "
        f"({run.budget.bigram_steps} full-batch steps from W ~ N(0, 1))"
    )
    return claim(
        "l2", "L2 regularisation",
        "the model learns almost the same probabilities, but with much smaller weights",
        [record["command"]], {"kl": kl, "rms": rms, "val": val}, rows, parts, why,
    ) | {"key_figure": f"RMS(W) {fmt(rms[0.0], 2)} → {fmt(rms[0.01], 2)}, "
                       f"KL {fmt(kl[0.0])} → {fmt(kl[0.01])}"}  # fmt: skip


def whole_file_counts(data: Path) -> tuple[np.ndarray, Any]:
    """(bigram counts of every word of the file, vocab)."""
    ds = dataset(data, 1, "(1.0,0.0,0.0)")
    X, Y = ds.split("train")
    return np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size)), ds.vocab


def claim_keepdim(run: Runner) -> dict[str, Any]:
    """The notes' table with and without keepdim (NumPy's keepdims broadcasts as torch's)."""
    counts, vocab = whole_file_counts(run.data)
    right, wrong = keepdim_tables(counts + 1)  # the lecture's P = (N + 1) / row sums
    row_wrong, row_right = wrong.sum(1), right.sum(1)
    dev_wrong, dev_right = np.abs(row_wrong - 1), np.abs(row_right - 1)
    col_dev = float(np.abs(wrong.sum(0) - 1).max())
    q, u = vocab.stoi["q"], vocab.stoi["u"]
    parts = [
        bound_part("without keepdim the table is wrong: its rows do not sum to 1 (largest "
                   "deviation)", float(dev_wrong.max()), 1e-6, below=False),
        bound_part("with keepdim every row sums to 1 (largest deviation)", float(dev_right.max()),
                   1e-12, below=True),
    ]  # fmt: skip
    itos = vocab.itos
    order = np.argsort(-dev_wrong)[:3]
    table = [["table", "row sums: min", "max", "mean |sum − 1|", "P(u | q)"]]
    table.append(
        [
            "counts / counts.sum(1, keepdims=True)",
            fmt(row_right.min()),
            fmt(row_right.max()),
            f"{dev_right.mean():.1e}",
            fmt(right[q, u]),
        ]
    )
    table.append(["counts / counts.sum(1)", fmt(row_wrong.min()), fmt(row_wrong.max()),
                  fmt(dev_wrong.mean()), fmt(wrong[q, u])])  # fmt: skip
    why = (
        f"without keepdim entry (i, j) is divided by row j's sum: the rows sum to between "
        f"{row_wrong.min():.3f} and {row_wrong.max():.3f} (furthest: "
        f"{', '.join(repr(itos[i]) for i in order)}); because every character is both preceded "
        f"and followed once, a bigram table's row sums equal its column sums, so the wrong table "
        f"is P(previous | next) — its columns sum to 1 (largest deviation {col_dev:.1e})"
    )
    return claim(
        "keepdim",
        "keepdim",
        "if we don't write keepdim=True … a (1, 27) tensor … will have the WRONG values after "
        "division takes place",
        [
            "in-process: keepdim_tables(counts + 1) on the whole file's bigram counts "
            "(scripts/notes_claims.py)"
        ],
        {
            "row_sums_wrong": row_wrong.tolist(),
            "row_sums_right": row_right.tolist(),
            "wrong_column_sum_max_deviation": col_dev,
        },
        table,
        parts,
        why,
    ) | {
        "key_figure": f"rows of the wrong table sum to {row_wrong.min():.3f}…{row_wrong.max():.3f}"
    }


def block_sweep(run: Runner) -> dict[str, Any]:
    """The notes' MLP at each block_size (also the default-embedding, running-statistics,
    name-length and batch-32 runs: block 3 is the `mlp` config itself)."""
    sizes = ",".join(str(b) for b in run.budget.block_sizes)
    return run.sweep(
        "block_size", "mlp", {"model.block_size": sizes}, run.loop(run.budget.mlp_steps)
    )


def claim_block_size(run: Runner) -> dict[str, Any]:
    """val against block_size, and the first size after which one more character stops
    helping by more than twice the spread."""
    record, sizes = block_sweep(run), run.budget.block_sizes
    val = {b: losses(record, "val", model__block_size=b) for b in sizes}
    train = {b: losses(record, "train", model__block_size=b) for b in sizes}
    steps = {
        b: difference_part(f"{a} → {b}", val[b], val[a], -1)
        for a, b in zip(sizes, sizes[1:], strict=False)
    }
    stop = next((a for a, b in zip(sizes, sizes[1:], strict=False) if not steps[b]["holds"]), None)
    rows = [["block_size", "train", "val", "val change from the size before", "2 × spread"]]
    for b in sizes:
        s = steps.get(b)
        rows.append(
            [str(b), fmt(train[b]), fmt(val[b]), f"{s['difference']:+.4f}" if s else "",
             f"{2 * s['spread']:.4f}" if s else ""]
        )  # fmt: skip
    last = sizes[-1]
    where = (
        f"val stops improving after block_size {stop}" if stop else f"val still improves at {last}"
    )
    parts = [
        difference_part(
            f"the longest context tried ({last}) beats the notes' 3", val[last], val[3], -1
        ),
        part(f"each added character helps, up to {last}", stop is None, where),
    ]
    why = (
        f"{where} ({run.budget.mlp_steps:,} steps); from 3 to {last} characters val moves "
        f"{statistics.mean(val[last]) - statistics.mean(val[3]):+.4f}"
    )
    return claim(
        "block_size",
        "Block size",
        "set block size to the longest context you can afford (in compute and memory) — more "
        "importantly, one that still gives good performance",
        [record["command"]],
        {"val": val, "train": train, "stops_after": stop},
        rows,
        parts,
        why,
    ) | {"key_figure": where}


def embedding_table(loaded: Any) -> np.ndarray:
    """The V x E character embedding of a trained MLP (its `Embed` params)."""
    leaves = jax.tree_util.tree_leaves_with_path(loaded.variables["params"])
    tables = [x for p, x in leaves if "Embed" in jax.tree_util.keystr(p)]
    return np.asarray(tables[0], np.float64)


def embedding_geometry(C_VxE: np.ndarray, itos: Sequence[str]) -> dict[str, float]:
    """Distances in one embedding: mean within-vowel, within-consonant and vowel–consonant
    distances; q, x, j's mean distance from the centroid of all rows against the other
    letters', with their ranks (1 = farthest of all rows); the boundary token's nearest-neighbour
    distance against the mean of the letters'."""
    D = np.linalg.norm(C_VxE[:, None] - C_VxE[None], axis=-1)
    letters = [i for i, c in enumerate(itos[:-1])]
    vow = [i for i in letters if itos[i] in VOWELS]
    con = [i for i in letters if itos[i] not in VOWELS]
    rare = [i for i in letters if itos[i] in RARE]

    def mean_pairs(a: list[int], b: list[int]) -> float:
        return float(np.mean([D[i, j] for i in a for j in b if i != j]))

    centre = np.linalg.norm(C_VxE - C_VxE.mean(0), axis=1)
    rank = {itos[i]: int(np.sum(centre > centre[i])) + 1 for i in rare}
    nn_dist = np.where(np.eye(len(D), dtype=bool), np.inf, D).min(1)
    return {
        "within_vowel": mean_pairs(vow, vow),
        "within_consonant": mean_pairs(con, con),
        "vowel_consonant": mean_pairs(vow, con),
        "rare_centroid": float(centre[rare].mean()),
        "other_centroid": float(np.mean([centre[i] for i in letters if i not in rare])),
        **{f"rank_{c}": float(r) for c, r in rank.items()},
        "boundary_nn": float(nn_dist[-1]),
        "letters_nn": float(nn_dist[letters].mean()),
    }


def claim_embeddings(run: Runner) -> dict[str, Any]:
    """The four groupings of the notes on the 2-D and the default (10-D) embeddings."""
    two_d = run.sweep("embedding_2d", "mlp_2d", {}, run.loop(run.budget.mlp_steps))
    sources = {"2-D": members(two_d), "10-D": members(block_sweep(run), model__block_size=3)}
    geo, parts = {}, []
    for label, found in sources.items():
        rows = []
        for m in found:
            loaded = load_member(m)
            rows.append(embedding_geometry(embedding_table(loaded), loaded.vocab.itos))
        g = geo[label] = {k: [r[k] for r in rows] for k in rows[0]}
        parts += [
            difference_part(f"{label}: vowels group (within-vowel < vowel–consonant distance)",
                            g["within_vowel"], g["vowel_consonant"], -1, paired=True),
            difference_part(f"{label}: consonants group (within-consonant < vowel–consonant)",
                            g["within_consonant"], g["vowel_consonant"], -1, paired=True),
            difference_part(f"{label}: q, x, j lie far out (distance from the centroid, against "
                            "the other letters')", g["rare_centroid"], g["other_centroid"], +1,
                            paired=True),
            difference_part(f"{label}: the boundary token is isolated (its nearest-neighbour "
                            "distance, against the letters' mean)", g["boundary_nn"],
                            g["letters_nn"], +1, paired=True),
        ]  # fmt: skip
    names = [("within_vowel", "within-vowel distance"), ("within_consonant", "within-consonant"),
             ("vowel_consonant", "vowel–consonant"), ("rare_centroid", "q, x, j from centroid"),
             ("other_centroid", "other letters from centroid"), ("rank_q", "rank of q (1 = farthest of 27)"),
             ("rank_x", "rank of x"), ("rank_j", "rank of j"), ("boundary_nn", "boundary token's NN distance"),
             ("letters_nn", "letters' mean NN distance")]  # fmt: skip
    table = [["measure", "2-D", "10-D"]]
    table += [[label, fmt(geo["2-D"][k], 2), fmt(geo["10-D"][k], 2)] for k, label in names]
    held = [p["part"] for p in parts if p["holds"]]
    why = f"{len(held)} of {len(parts)} parts hold; " + "; ".join(
        f"{p['part'].split(' (')[0]}: {'yes' if p['holds'] else 'no'}" for p in parts
    )
    return claim(
        "embeddings",
        "What the embeddings learn",
        "Vowels tend to group together. Consonants group together. Rare letters 'q', 'x', 'j' "
        "are far away. The end token '.' is isolated.",
        [two_d["command"], block_sweep(run)["command"] + "   (the block_size=3 members)"],
        geo,
        table,
        parts,
        why,
    ) | {"key_figure": f"{len(held)}/{len(parts)} groupings significant"}


GAINS = (1.0, 5.0 / 3.0, 3.0)


def layer_stats(model: nn.Module, variables: Any, X_BxT: jax.Array) -> dict[str, list[float]]:
    """Per tanh layer of a DeepTanhMLP on one batch: std of the pre-activation, std of the tanh
    output and its saturated fraction (|h| > 0.97, the lecture's threshold)."""
    from jax_makemore.diagnostics import saturated_fraction

    _, state = model.apply(variables, X_BxT, train=False, mutable=["intermediates"])
    inter = state["intermediates"]
    n = model.n_layer
    return {
        "preact_std": [float(jnp.std(inter[f"preact_{i}"][0])) for i in range(n)],
        "h_std": [float(jnp.std(inter[f"h_{i}"][0])) for i in range(n)],
        "saturated": [float(saturated_fraction(inter[f"h_{i}"][0])) for i in range(n)],
    }


def deep_stats(run: Runner, record: dict[str, Any], X_BxT: jax.Array, vocab_size: int) -> dict:
    """{gain: {'init': [stats per seed], 'trained': [...], 'val': [...]}}; init from
    PRNGKey(seed) of each seed, trained from each member's checkpoint."""
    out = {}
    for gain in GAINS:
        found = members(record, model__gain=gain)
        inits, trained = [], []
        for seed in range(run.budget.seeds):
            model = DeepTanhMLP(vocab_size=vocab_size, gain=gain)
            inits.append(
                layer_stats(model, model.init(jax.random.PRNGKey(seed), X_BxT, False), X_BxT)
            )
        for m in found:
            loaded = load_member(m)
            trained.append(layer_stats(loaded.model, loaded.variables, X_BxT))
        out[gain] = {"init": inits, "trained": trained, "val": [m["loss"]["val"] for m in found]}
    return out


def per_layer(stats: list[dict[str, list[float]]], key: str, layer: int) -> list[float]:
    """One statistic of one layer, per seed."""
    return [s[key][layer] for s in stats]


def claim_kaiming(run: Runner) -> dict[str, Any]:
    """tanh's output std, then per-layer statistics of the 5-layer tanh MLP for three gains."""
    exact, sampled = tanh_std_exact(), tanh_std_sampled()
    record = run.sweep("deep_tanh", str(run.helpers["notes_deep_tanh"]),
                       {"model.gain": ",".join(repr(g) for g in GAINS)},
                       run.loop(run.budget.deep_steps))  # fmt: skip
    ds = dataset(run.data, 3)
    X, _ = ds.split("train")
    rows = np.random.default_rng(0).choice(len(X), 1000, replace=False)
    stats = deep_stats(run, record, jnp.asarray(X[rows]), ds.vocab.size)
    good = stats[5.0 / 3.0]["init"]
    worst = max((statistics.mean(per_layer(good, "preact_std", i)) for i in range(1, 5)),
                key=lambda s: abs(s - 1))  # fmt: skip
    sat = {g: [statistics.mean(s["saturated"]) for s in stats[g]["init"]] for g in GAINS}
    parts = [
        figure_part("tanh of N(0, 1) has std ≈ 0.63", exact, 0.63, 0.005),
        figure_part("gain 5/3 keeps the pre-activations' std ≈ 1 at every layer fed by a tanh "
                    "(layers 2–5; the one farthest from 1, at init)", worst, 1.0, 0.2),
        difference_part("without the gain (1) the activations shrink with depth (pre-activation "
                        "std, layer 5 against layer 1, at init)",
                        per_layer(stats[1.0]["init"], "preact_std", 4),
                        per_layer(stats[1.0]["init"], "preact_std", 0), -1, paired=True),
        difference_part("a larger gain (3) saturates more tanh units than 5/3 (mean over layers, "
                        "at init)", sat[3.0], sat[5.0 / 3.0], +1),
    ]  # fmt: skip
    table = [["gain", "layer", "pre-act std (init)", "tanh std (init)", "saturated (init)",
              "pre-act std (trained)", "tanh std (trained)", "saturated (trained)"]]  # fmt: skip
    for g in GAINS:
        for i in range(5):
            cells = [fmt(per_layer(stats[g][when], key, i), 3) for when in ("init", "trained")
                     for key in ("preact_std", "h_std", "saturated")]  # fmt: skip
            table.append([f"{g:.3g}" if i == 0 else "", str(i + 1), *cells[:3], *cells[3:]])
    vals = "; ".join(f"gain {g:.3g}: val {fmt(stats[g]['val'])}" for g in GAINS)
    why = (
        f"std(tanh(z)) = {exact:.4f} exactly ({sampled:.4f} from 10⁷ float32 draws), so the "
        f"inverse factor would be {1 / exact:.3f}, not 5/3 = 1.667; with 5/3 the pre-activation "
        f"std of layers 2–5 is at most {abs(worst - 1):.2f} from 1 (layer 1 sees the N(0, 1) "
        "embeddings, not a tanh, so its std is 5/3). After "
        f"{run.budget.deep_steps:,} steps: {vals}"
    )
    return claim(
        "kaiming", "Kaiming gain",
        "Tanh on std=1 input produces std≈0.63 output, so we boost the input by the inverse "
        "factor to keep output variance ≈1 (the 5/3 gain)",
        ["in-process: tanh_std_exact(), tanh_std_sampled()", record["command"]],
        {"tanh_std_exact": exact, "tanh_std_sampled": sampled,
         "layers": {f"{g:.4g}": stats[g] for g in GAINS}},
        table, parts, why,
    ) | {"key_figure": f"std tanh(N(0,1)) = {exact:.4f}; gain 5/3 pre-act std ≈ {worst:.2f} "
                       "at the worst layer"}  # fmt: skip


INIT_GAINS = (0.2, 1.0, 5.0 / 3.0, 5.0)


def claim_init_bn(run: Runner) -> dict[str, Any]:
    """The spread of val over init scales, with BatchNorm and without."""
    record = run.sweep("init_bn", "mlp",
                       {"model.kaiming_gain": ",".join(repr(g) for g in INIT_GAINS),
                        "model.use_batchnorm": "True,False"},
                       run.loop(run.budget.mlp_steps))  # fmt: skip
    table = [["init gain", "val with BatchNorm", "val without", "train with", "train without"]]
    val, span = {}, {}
    for bn in (True, False):
        val[bn] = {g: losses(record, "val", model__kaiming_gain=g, model__use_batchnorm=bn)
                   for g in INIT_GAINS}  # fmt: skip
        means = {g: statistics.mean(v) for g, v in val[bn].items()}
        hi, lo = max(means, key=means.get), min(means, key=means.get)
        spread = math.hypot(mean_sd(val[bn][hi])[1], mean_sd(val[bn][lo])[1])
        span[bn] = (means[hi] - means[lo], spread)
    for g in INIT_GAINS:
        train = [losses(record, "train", model__kaiming_gain=g, model__use_batchnorm=bn)
                 for bn in (True, False)]  # fmt: skip
        table.append([f"{g:.3g}", fmt(val[True][g]), fmt(val[False][g]), fmt(train[0]),
                      fmt(train[1])])  # fmt: skip
    table.append(["range of the means", fmt(span[True][0]), fmt(span[False][0]), "", ""])
    parts = [
        stat_difference_part("BatchNorm shrinks the range of val over init scales",
                             span[True][0] - span[False][0],
                             math.hypot(span[True][1], span[False][1]), -1),
        part("with BatchNorm init almost stops mattering: its best and worst init scale differ "
             "by no more than twice their spread", span[True][0] <= 2 * span[True][1],
             f"range {span[True][0]:.4f}, 2 × spread {2 * span[True][1]:.4f}"),
    ]  # fmt: skip
    why = (
        f"over init gains {', '.join(f'{g:.3g}' for g in INIT_GAINS)} val spans "
        f"{span[True][0]:.4f} with BatchNorm and {span[False][0]:.4f} without "
        f"({run.budget.mlp_steps:,} steps of the notes' 1-hidden-layer MLP)"
    )
    return claim(
        "init_bn", "Init with BatchNorm",
        "BatchNorm is so powerful that initialization almost stops mattering",
        [record["command"]], {"val": {str(bn): {f"{g:.4g}": v for g, v in val[bn].items()}
                                      for bn in val}, "range": {str(k): v for k, v in span.items()}},
        table, parts, why,
    ) | {"key_figure": f"val range over init {span[True][0]:.4f} with BN, "
                       f"{span[False][0]:.4f} without"}  # fmt: skip


def nll(logits: jax.Array, Y: jax.Array) -> jax.Array:
    """Per-row negative log-likelihood."""
    return jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, Y[:, None], 1)[:, 0]


def batch_stat_nll(
    model: nn.Module, variables: Any, X: np.ndarray, Y: np.ndarray, size: int
) -> float:
    """val NLL when each batch of `size` rows (shuffled with seed 0) is normalised with its own
    statistics (BatchNorm in training mode), as a network that never kept running statistics;
    the last incomplete batch is dropped."""
    order = np.random.default_rng(0).permutation(len(X))
    n = len(X) // size * size
    Xb = jnp.asarray(X[order[:n]].reshape(-1, size, X.shape[1]))
    Yb = jnp.asarray(Y[order[:n]].reshape(-1, size))

    @jax.jit
    def one(x, y):
        logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return nll(logits, y)

    return float(jnp.mean(jax.lax.map(lambda xy: one(*xy), (Xb, Yb), batch_size=256)))


def recalibrated(model: nn.Module, variables: Any, X_train: np.ndarray) -> Any:
    """The variables with BatchNorm's statistics replaced by those of the whole training split
    (one training-mode pass with momentum 1, so the running values become the batch's)."""
    _, new = model.clone(bn_momentum=1.0).apply(
        variables, jnp.asarray(X_train), train=True, mutable=["batch_stats"]
    )
    return {**variables, "batch_stats": new["batch_stats"]}


def eval_nll(model: nn.Module, variables: Any, X: np.ndarray, Y: np.ndarray) -> float:
    """val NLL in evaluation mode (BatchNorm's stored statistics)."""
    return float(jnp.mean(nll(model.apply(variables, jnp.asarray(X), train=False), jnp.asarray(Y))))


def erased_input(model: nn.Module, variables: Any, X: np.ndarray) -> float:
    """Largest |BatchNorm output - its bias| over single-example batches of the rows of `X`:
    0 when normalising one example erases it (x - mean(x) = 0)."""

    def post_bn(x_1xT: jax.Array) -> jax.Array:
        _, state = model.apply(
            variables, x_1xT[None], train=True, mutable=["batch_stats", "intermediates"]
        )
        return state["intermediates"]["preact_BxH"][0][0]

    bias = variables["params"]["BatchNorm_0"]["bias"]
    return float(jnp.abs(jax.vmap(post_bn)(jnp.asarray(X)) - bias).max())


def bn_evaluations(run: Runner) -> dict[str, list[float]]:
    """For each seed's `mlp` model: val with running statistics, with each batch's statistics
    (32 and 1), with statistics recalibrated on the training split; and, for a batch of one,
    the batch variance and the share of non-finite logits at eps 1e-5 and at eps 0."""
    out: dict[str, list[float]] = {}
    ds = dataset(run.data, 3)
    (Xt, _), (Xv, Yv) = ds.split("train"), ds.split("val")
    for m in members(block_sweep(run), model__block_size=3):
        loaded = load_member(m)
        model, variables = loaded.model, loaded.variables
        row = {
            "running": eval_nll(model, variables, Xv, Yv),
            "batch_32": batch_stat_nll(model, variables, Xv, Yv, 32),
            "batch_1": batch_stat_nll(model, variables, Xv, Yv, 1),
            "recalibrated": eval_nll(model, recalibrated(model, variables, Xt), Xv, Yv),
        }
        row["erased"] = erased_input(model, variables, Xv[:100])
        x1 = jnp.asarray(Xv[:1])
        for eps in (1e-5, 0.0):
            logits, _ = model.clone(bn_eps=eps).apply(
                variables, x1, train=True, mutable=["batch_stats"]
            )
            row[f"nonfinite_eps_{eps:g}"] = float(jnp.mean(~jnp.isfinite(logits)))
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return out


def claim_running_stats(run: Runner, ev: dict[str, list[float]]) -> dict[str, Any]:
    """val with running statistics, per-batch statistics (32, 1) and recalibrated ones."""
    running, recal, one = ev["running"], ev["recalibrated"], ev["batch_1"]
    gap = [a - b for a, b in zip(one, running, strict=True)]
    parts = [
        figure_part("running statistics give the global normalisation the model was trained "
                    "toward: val equals the recalibrated model's (difference, tolerance 0.01)",
                    statistics.mean(a - b for a, b in zip(running, recal, strict=True)), 0.0, 0.01),
        difference_part("normalising over a single example is worse", one, running, +1,
                        paired=True),
        bound_part("… only slightly worse (by less than 0.1 nats)", statistics.mean(gap), 0.1,
                   below=True),
    ]  # fmt: skip
    table = [["BatchNorm statistics at evaluation", "val"],
             ["running (kept during training, momentum 0.001)", fmt(running)],
             ["recalibrated over the whole training split", fmt(recal)],
             ["each evaluation batch of 32", fmt(ev["batch_32"])],
             ["each example alone (batch of 1)", fmt(one)]]  # fmt: skip
    why = (
        f"val with the running statistics is {fmt(running)}, with recalibrated ones "
        f"{fmt(recal)}; a batch of one normalises every hidden unit to its bias, so the model "
        f"ignores its input and val rises by {statistics.mean(gap):.3f} nats"
    )
    return claim(
        "running_stats",
        "Running statistics",
        "Using running stats → … great names. Normalizing over single example → … slightly "
        "worse names.",
        [
            block_sweep(run)["command"] + "   (the block_size=3 members)",
            "in-process: eval_nll, batch_stat_nll(32 and 1), recalibrated() on each member",
        ],
        ev,
        table,
        parts,
        why,
    ) | {"key_figure": f"val running {fmt(running)}, batch of 1 {fmt(one)}"}


def claim_batch_of_one(run: Runner, ev: dict[str, list[float]]) -> dict[str, Any]:
    """What normalising over a batch of one does: std 0, and NaN only without epsilon."""
    erased, finite_eps = max(ev["erased"]), max(ev["nonfinite_eps_1e-05"])
    nan_no_eps = min(ev["nonfinite_eps_0"])
    parts = [
        bound_part("over a batch of one the std is 0: BatchNorm's output is its bias for every "
                   "input (largest |output − bias|)", erased, 1e-6, below=True),
        bound_part("→ NaNs/infs, with the epsilon (1e-5) the notes' BatchNorm adds (share of "
                   "non-finite logits)", finite_eps, 0.0, below=False),
    ]  # fmt: skip
    table = [["BatchNorm over one example", "value"],
             ["largest |output − bias| (100 val windows, each alone)", f"{erased:.2g}"],
             ["non-finite logits, eps 1e-5", f"{finite_eps:.2g}"],
             ["non-finite logits, eps 0", f"{nan_no_eps:.2g}"],
             ["val, each example alone (eps 1e-5)", fmt(ev["batch_1"])]]  # fmt: skip
    why = (
        f"the std over one example is exactly 0; with the epsilon {finite_eps:.0%} of the "
        f"logits are non-finite, without it {nan_no_eps:.0%}: with it the hidden layer is "
        "constant (BatchNorm's bias), so the model ignores its input"
    )
    return claim(
        "batch_of_one",
        "A batch of one",
        "With batch=1, dim=0 gives std≈0 → division by near-zero → NaNs/infs.",
        [
            "in-process: BatchNorm in training mode on single val windows of each block_size=3 "
            "member, eps 1e-5 and 0"
        ],
        {k: ev[k] for k in ("erased", "nonfinite_eps_1e-05", "nonfinite_eps_0")},
        table,
        parts,
        why,
    ) | {"key_figure": f"finite with eps (NaN share {nan_no_eps:.0%} without)"}


def minibatch_runs(run: Runner) -> dict[str, dict[str, list[float]]]:
    """{regime/batch: {'train': [...], 'val': [...], 'steps': n}} for batches 8, 32, 256 and the
    full split at equal steps (short: every batch, long: the MLP recipe's steps for 8/32/256)
    and at equal examples seen (the recipe's steps x 32). Batch 32 at the recipe's steps is
    the block-size sweep's block_size=3 (the same runs)."""
    b = run.budget
    n_train = len(dataset(run.data, 3).split("train")[0])
    examples = b.mlp_steps * 32
    full_steps = max(1, round(examples / n_train))
    base = members(block_sweep(run), model__block_size=3)
    short = run.sweep("batch_steps", "mlp", {"batch_size": "8,32,256"}, run.loop(b.equal_steps))
    short_full = run.sweep(
        "batch_steps_full", "mlp", {}, run.loop(b.equal_steps) | {"full_batch": "True"}
    )
    long = run.sweep("batch_steps_long", "mlp", {"batch_size": "8,256"}, run.loop(b.mlp_steps))
    ex8 = run.sweep("batch_examples_8", "mlp", {}, run.loop(4 * b.mlp_steps) | {"batch_size": "8"})
    ex256 = run.sweep("batch_examples_256", "mlp", {},
                      run.loop(b.mlp_steps // 8) | {"batch_size": "256"})  # fmt: skip
    exfull = run.sweep(
        "batch_examples_full", "mlp", {}, run.loop(full_steps) | {"full_batch": "True"}
    )
    sources = {
        ("short", "8"): (members(short, batch_size=8), b.equal_steps),
        ("short", "32"): (members(short, batch_size=32), b.equal_steps),
        ("short", "256"): (members(short, batch_size=256), b.equal_steps),
        ("short", "full"): (members(short_full), b.equal_steps),
        ("long", "8"): (members(long, batch_size=8), b.mlp_steps),
        ("long", "32"): (base, b.mlp_steps),
        ("long", "256"): (members(long, batch_size=256), b.mlp_steps),
        ("examples", "8"): (members(ex8), 4 * b.mlp_steps),
        ("examples", "32"): (base, b.mlp_steps),
        ("examples", "256"): (members(ex256), b.mlp_steps // 8),
        ("examples", "full"): (members(exfull), full_steps),
    }
    out = {f"{regime}/{batch}": {"train": [m["loss"]["train"] for m in found],
                                  "val": [m["loss"]["val"] for m in found], "steps": steps}
           for (regime, batch), (found, steps) in sources.items()}  # fmt: skip
    commands = [r["command"] for r in (short, short_full, long, ex8, ex256, exfull)]
    return {"runs": out, "commands": commands, "n_train": n_train, "examples": examples}


def claim_minibatch(run: Runner) -> dict[str, Any]:
    """Batch sizes at equal steps and at equal examples seen."""
    mb = minibatch_runs(run)
    r = mb["runs"]

    def gap(key: str) -> list[float]:
        return [v - t for t, v in zip(r[key]["train"], r[key]["val"], strict=True)]

    table = [["regime", "batch", "steps", "train", "val", "val − train"]]
    names = {"short": "equal steps (short)", "long": "equal steps", "examples": "equal examples"}
    for key, row in r.items():
        regime, batch = key.split("/")
        table.append([names[regime], batch, f"{row['steps']:,}", fmt(row["train"]), fmt(row["val"]),
                      fmt(gap(key))])  # fmt: skip
    parts = [
        difference_part("converges faster: at equal examples seen, batch 32 reaches a lower val "
                        "than the full split", r["examples/32"]["val"], r["examples/full"]["val"], -1),
        difference_part("… and than batch 256", r["examples/32"]["val"], r["examples/256"]["val"], -1),
        difference_part("noise regularises: at equal steps, batch 32's train–val gap is smaller "
                        "than batch 256's", gap("long/32"), gap("long/256"), -1),
    ]  # fmt: skip
    per_step = statistics.mean(r["short/full"]["val"]) - statistics.mean(r["short/32"]["val"])
    why = (
        f"at {mb['examples']:,} examples seen batch 32 reaches val {fmt(r['examples/32']['val'])}, "
        f"the full split ({r['examples/full']['steps']} full-batch steps) {fmt(r['examples/full']['val'])}; "
        f"per step the full split is {per_step:+.3f} from batch 32 after "
        f"{r['short/full']['steps']} steps; at equal steps batch 32's gap is "
        f"{fmt(gap('long/32'))} against 256's {fmt(gap('long/256'))}"
    )
    return claim(
        "minibatch", "Mini-batches",
        "Noise is your friend — randomness acts as a natural regularizer … Converges faster in "
        "practice",
        mb["commands"] + [block_sweep(run)["command"] + "   (batch 32: the block_size=3 members)"],
        mb, table, parts, why,
    ) | {"key_figure": f"equal examples: val b32 {fmt(r['examples/32']['val'])} vs full "
                       f"{fmt(r['examples/full']['val'])}"}  # fmt: skip


def claim_examples_seen(run: Runner) -> dict[str, Any]:
    """How often 100k steps of 32 see each example, on the whole file and the training split."""
    whole = len(dataset(run.data, 3, "(1.0,0.0,0.0)").split("train")[0])
    train = len(dataset(run.data, 3).split("train")[0])
    seen = 100_000 * 32
    parts = [
        figure_part("each example is seen ~14 times (whole file)", seen / whole, 14, 0.5),
        figure_part("… (the training split the model actually trains on)", seen / train, 14, 0.5),
    ]
    table = [["examples", "windows", "3.2M / windows"],
             ["whole file", f"{whole:,}", fmt(seen / whole, 1)],
             ["training split (80% of the words)", f"{train:,}", fmt(seen / train, 1)]]  # fmt: skip
    why = (
        f"3.2M / {whole:,} = {seen / whole:.1f} on the whole file, but training only sees the "
        f"training split: {seen / train:.1f} times per example"
    )
    return claim(
        "examples_seen",
        "Examples seen",
        "after 100k steps with batch_size=32 → 3.2 million examples processed → each example "
        "seen ~14 times on average",
        ["in-process: context windows of the whole file and of the training split"],
        {"whole_file_windows": whole, "train_windows": train},
        table,
        parts,
        why,
    ) | {"key_figure": f"{seen / whole:.1f} (whole file), {seen / train:.1f} (training split)"}


def ks_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Largest gap between the empirical CDFs of two samples of integers."""
    top = max(max(a), max(b)) + 1
    ca = np.cumsum(np.bincount(a, minlength=top)) / len(a)
    cb = np.cumsum(np.bincount(b, minlength=top)) / len(b)
    return float(np.abs(ca - cb).max())


def claim_name_length(run: Runner) -> dict[str, Any]:
    """Lengths of sampled names from block_size 3 and 8 against the training words'."""
    data_len = [len(w) for w in dataset(run.data, 3).words[0]]
    table = [["source", "mean length", "std", "longest", "share longer than block_size",
              "KS distance to the data"]]  # fmt: skip
    table.append(["training words", fmt(float(np.mean(data_len)), 2), fmt(float(np.std(data_len)), 2),
                  str(max(data_len)), "", ""])  # fmt: skip
    stats = {}
    for b in (3, 8):
        rows = []
        for m in members(block_sweep(run), model__block_size=b):
            lens = [len(w) for w in run.sample(m["dir"], run.budget.num_samples)]
            rows.append({"mean": float(np.mean(lens)), "std": float(np.std(lens)),
                         "max": float(max(lens)), "longer": float(np.mean(np.array(lens) > b)),
                         "ks": ks_distance(lens, data_len)})  # fmt: skip
        s = stats[b] = {k: [r[k] for r in rows] for k in rows[0]}
        table.append([f"samples, block_size {b}", fmt(s["mean"], 2), fmt(s["std"], 2),
                      fmt(s["max"], 1), fmt(s["longer"], 3), fmt(s["ks"], 3)])  # fmt: skip
    parts = [
        bound_part("lengths are limited by block_size: few block_size-3 samples are longer than "
                   "3 characters (share, needs < 5%)", statistics.mean(stats[3]["longer"]), 0.05,
                   below=True),
        difference_part("a longer context gives lengths closer to the data's (KS distance, block "
                        "8 against 3)", stats[8]["ks"], stats[3]["ks"], -1),
    ]  # fmt: skip
    why = (
        f"{statistics.mean(stats[3]['longer']):.0%} of block_size-3 names are longer than 3 "
        "characters: sampling slides the window and stops only at the boundary token, so length "
        "is not capped; from block_size 3 to 8 the KS distance to the data's lengths moves by "
        f"{statistics.mean(stats[8]['ks']) - statistics.mean(stats[3]['ks']):+.3f}"
    )
    return claim(
        "name_length", "Name length",
        "Generated name lengths are limited by the context length (block_size).",
        [block_sweep(run)["command"] + "   (the block_size=3 and 8 members)",
         f"python -m jax_makemore.sample --workdir MEMBER --num {run.budget.num_samples} --seed 0"],
        {str(k): v for k, v in stats.items()} | {"data_mean_length": float(np.mean(data_len))},
        table, parts, why,
    ) | {"key_figure": f"{statistics.mean(stats[3]['longer']):.0%} of block-3 names exceed 3 "
                       "characters"}  # fmt: skip


def claim_b1(run: Runner) -> dict[str, Any]:
    """The gradient of a hidden bias placed before BatchNorm, in float32, on one batch."""
    ds = dataset(run.data, 3)
    X, Y = ds.split("train")
    rows = np.random.default_rng(0).choice(len(X), 32, replace=False)
    g = b1_gradient(jnp.asarray(X[rows]), jnp.asarray(Y[rows]), ds.vocab.size)
    parts = [
        bound_part("the gradient of b1 is zero: max |dL/db1| relative to the RMS of the other "
                   "gradients", g["ratio"], 1e-6, below=True),
        bound_part("any constant shift from b1 is subtracted: largest change of the logits when "
                   "b1 grows by 5", g["max_logit_change_b1_plus_5"], 1e-4, below=True),
    ]  # fmt: skip
    table = [["measure (one batch of 32, float32)", "value"],
             ["max |dL/db1|", f"{g['max_abs_grad_b1']:.2e}"],
             ["RMS of the other gradients", f"{g['rms_other_grads']:.2e}"],
             ["ratio", f"{g['ratio']:.2e}"],
             ["largest logit change, b1 + 5", f"{g['max_logit_change_b1_plus_5']:.2e}"]]  # fmt: skip
    why = (
        f"dL/db1 = sum over the batch of dL/d(preact), which BatchNorm's backward makes 0: "
        f"measured {g['ratio']:.1e} of the other gradients' scale (float32 rounding)"
    )
    return claim(
        "b1",
        "Removing b1",
        "Why remove bias b1 after adding BatchNorm? Any constant shift from b1 is immediately "
        "subtracted by the -bnmean term.",
        ["in-process: b1_gradient() on BiasBatchNormMLP (scripts/notes_claims.py)"],
        g,
        table,
        parts,
        why,
    ) | {"key_figure": f"|dL/db1| / RMS(other grads) = {g['ratio']:.1e}"}


# ---------------------------------------------------------------------------------------------
# The report


def runs_wall_seconds(out: Path) -> tuple[float, str]:
    """(seconds, how measured): the wall time of the training, also when `--reuse` only redoes
    the analysis: the sum of
    the seconds each command took (DIR/runs/<name>/seconds.json), or, when a run lacks that
    file, the seconds from the first to the last file written under DIR/runs."""
    runs = [p for p in (out / "runs").iterdir() if p.is_dir()] if (out / "runs").is_dir() else []
    if runs and all((p / SECONDS_FILE).is_file() for p in runs):
        seconds = sum(json.loads((p / SECONDS_FILE).read_text())["seconds"] for p in runs)
        return seconds, "the commands under DIR/runs, added up"
    times = [p.stat().st_mtime for p in (out / "runs").rglob("*") if p.is_file()]
    span = max(times) - min(times) if times else 0.0
    return span, "first to last file written under DIR/runs, pauses included"


def shown_data(path: Path) -> str:
    """The data file as the report names it (the shipped file by its place in the package)."""
    default = Path(jax_makemore.DEFAULT_DATA_PATH).resolve()
    return (
        f"{default.relative_to(PACKAGE_ROOT)} (the shipped file)" if path == default else str(path)
    )


def provenance(run: Runner, wall: float, quick: bool) -> dict[str, Any]:
    """Data file, package versions, seeds, steps, machine and wall times of this run."""
    data = run.data.read_bytes()
    runs_seconds, how = runs_wall_seconds(run.out)
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    git = subprocess.run(["git", "-C", str(PACKAGE_ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    return {
        "mode": "quick" if quick else "full",
        "reused": run.reuse,
        "data": shown_data(run.data),
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "data_lines": data.decode("utf-8").count("\n"),
        "versions": {"python": platform.python_version(), **versions},
        "jax_makemore_commit": git.stdout.strip() or "unknown",
        "seeds": list(range(run.budget.seeds)),
        "budget": dataclasses.asdict(run.budget),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
        "wall_seconds": wall,
        "runs_wall_seconds": runs_seconds,
        "runs_wall_measured": how,
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def md_table(rows: list[list[str]]) -> list[str]:
    """A markdown table from a header row and body rows."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]


def claim_markdown(i: int, c: dict[str, Any]) -> list[str]:
    """One claim's section of claims.md."""
    lines = [f"## {i}. {c['title']}", "", f"> {c['quote']}", "", "```"]
    lines += c["commands"] + ["```", ""] + md_table(c["table"]) + ["", "Parts:", ""]
    for p in c["parts"]:
        lines.append(f"* {p['part']}: {p['measured']} — **{HOLDS if p['holds'] else FAILS}**")
    return lines + ["", f"**Verdict: {c['verdict']}.** {c['why']}.", ""]


def write_report(out: Path, claims: list[dict[str, Any]], prov: dict[str, Any]) -> None:
    """DIR/claims.json and DIR/claims.md."""
    (out / "claims.json").write_text(
        json.dumps({"provenance": prov, "claims": claims}, indent=1, default=str) + "\n"
    )
    b = prov["budget"]
    quick = prov["mode"] == "quick"
    lines = [
        "# The makemore notes, checked", "",
        f"Generated by `python scripts/notes_claims.py{' --quick' if quick else ''} --out DIR` "
        f"({prov['mode']} run on {prov['machine']}, load average {prov['load_average']} when it "
        f"ended). The training took {prov['runs_wall_seconds'] / 60:.1f} minutes of wall time "
        f"({prov['runs_wall_measured']})"
        + (f"; this report was regenerated from those runs with --reuse in "
           f"{prov['wall_seconds'] / 60:.1f} minutes" if prov["reused"] else
           f"; the whole command took {prov['wall_seconds'] / 60:.1f} minutes")
        + ". Each claim of the notes is measured with the project's own commands; "
        f"figures are mean ± std over {len(prov['seeds'])} seeds "
        f"({', '.join(map(str, prov['seeds']))}) unless a row says otherwise.", "",
        f"Budget: the notes' MLP recipe is shortened to {b['mlp_steps']:,} steps (SGD 0.1, then "
        f"0.01 from half-way), the 5-layer tanh MLP to {b['deep_steps']:,}, the bigrams to "
        f"{b['bigram_steps']} full-batch steps, "
        + ("a first look in a few minutes (--quick). " if quick else
           "so that the whole run takes about 40 minutes on a 2-core CPU shared with other "
           "jobs (the issue allowed 2 hours; 40 minutes keeps the reproduction cheap enough to "
           "rerun, and 4 seeds keep every comparison's spread measurable). ")
        + "Absolute losses are therefore above the 200,000-step figures of the README; every "
        "comparison is between runs of the same length.", "",
        "Verdict rule: a claim is split into parts. A claimed difference holds when the measured "
        "difference has the claimed sign and exceeds twice its spread over seeds (sqrt(sd_a² + "
        "sd_b²), or the sd of per-seed differences when both sides come from the same models); "
        "a claimed figure holds when it lies within the stated tolerance; a threshold part "
        "states its threshold. A claim holds when all its parts hold, does not hold when none "
        "does, and partly holds otherwise.", "",
        "| # | claim | verdict | key figure |", "|---:|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {i} | {c['title']} | {c['verdict']} | {c['key_figure']} |"
              for i, c in enumerate(claims, 1)]  # fmt: skip
    lines.append("")
    for i, c in enumerate(claims, 1):
        lines += claim_markdown(i, c)
    lines += ["## Provenance", "", f"* data: `{prov['data']}` ({prov['data_lines']:,} lines, "
              f"sha256 {prov['data_sha256'][:16]}…)",
              f"* package versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}; "
              f"jax_makemore at {prov['jax_makemore_commit']}",
              f"* seeds: {prov['seeds']}; budget: {json.dumps(b)}",
              f"* wall time: {prov['runs_wall_seconds']:.0f} s of training; "
              f"{prov['wall_seconds']:.0f} s for this invocation of the script", ""]  # fmt: skip
    (out / "claims.md").write_text("\n".join(lines), encoding="utf-8")


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    claims = run_all(run)
    write_report(out, claims, provenance(run, time.perf_counter() - t0, args.quick))
    for c in claims:
        print(f"{c['title']}: {c['verdict']} ({c['key_figure']})")
    print(f"-> {out / 'claims.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
