"""Will it fit? XLA's own memory figures for a compiled program, against the memory available.

`train` checks its compiled chunk and evaluation step before it touches the workdir, and
names what makes them large (`memory_cause`); `sweep` sizes its slices of members from the
figures of one member's compiled step. Both read
`compiled.memory_analysis()`: the arguments, outputs and temporaries XLA allocates, less the
donated buffers it reuses. (A model of the program's live values from its jaxpr, which needs
no compilation, was within a factor 1.4 of these figures but off in both directions.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import ml_collections

from jax_makemore.data import Dataset
from jax_makemore.errors import UserError

#: Fraction of the available memory a run or a slice of a sweep may plan to use.
MEMORY_FRACTION = 0.8
GB = 1024**3


def compiled_bytes(compiled: Any) -> int | None:
    """Bytes one device needs to run a compiled program (None when XLA does not say)."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, AttributeError, RuntimeError):
        return None
    if stats is None:
        return None
    return int(
        stats.temp_size_in_bytes
        + stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
    )


def available_bytes(device: Any | None = None) -> int | None:
    """Free memory of `device` (default: the first): an accelerator's allocator limit less
    what is in use, or the host's available RAM for a CPU; None when unknown."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(need: int | None, what: str, cause: str, fix: str) -> None:
    """A one-line UserError when `need` bytes exceed MEMORY_FRACTION of the available memory:
    it names `what` needs them, the `cause` and the flag that `fix`es it."""
    free = available_bytes()
    if need is None or free is None or need <= MEMORY_FRACTION * free:
        return
    raise UserError(
        f"{what} needs about {need / GB:.1f} GB but {free / GB:.1f} GB are available: "
        f"{cause}; {fix}"
    )


def memory_cause(
    ds: Dataset, layout: str, config: ml_collections.ConfigDict, batch_key: str
) -> tuple[str, str]:
    """What makes a step large, and the flag that makes it smaller: the longest line when it
    stretches every row of the sequences layout, else the batch size (`batch_key`)."""
    batch = config[batch_key]
    lengths = sorted(len(w) for split in ds.words for w in split)
    typical = lengths[int(0.999 * (len(lengths) - 1))]
    if layout == "sequences" and ds.longest_word > 4 * max(typical, 1):
        line, length = longest_line(ds.path)
        fits = max(n for n in lengths if n <= 4 * max(typical, 1))
        return (
            f"line {line} of data file '{ds.path}' has {length} characters, so every row is "
            f"{ds.seq_len} positions long",
            f"refuse such lines with --config.max_word_length={fits} (or lower "
            f"--config.{batch_key}={batch})",
        )
    return f"{batch_key}={batch}", f"lower --config.{batch_key}"


def longest_line(path: Path) -> tuple[int, int]:
    """(line number, length) of the longest stripped line of a text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    number = max(range(len(lines)), key=lambda n: len(lines[n].strip()))
    return number + 1, len(lines[number].strip())


def check_run(r: Any, first_chunk: int) -> None:
    """Stop before training, with the cause and the flag that fixes it, when the first chunk
    or an evaluation batch needs more memory than the machine has (the chunk is compiled here
    and kept for the loop). `r` is a train.Run."""
    # a chunk runs on every device of the mesh, which share the host's memory on a CPU;
    # evaluation runs on one device
    per_device = 1 if jax.devices()[0].platform != "cpu" else r.mesh.size
    need = None
    if first_chunk > 0:
        r.compile(first_chunk)
        need = compiled_bytes(r.compiled[first_chunk])
        need = None if need is None else need * per_device
    X, Y = r.ds.split("train")
    rows = min(r.config.eval_batch_size, len(X))
    shapes = [jax.ShapeDtypeStruct((rows, *a.shape[1:]), a.dtype) for a in (X, Y)]
    eval_need = compiled_bytes(r.eval_step.lower(r.variables(), *shapes).compile())
    if need is None or (eval_need is not None and eval_need > need):
        need, what = eval_need, f"evaluation in batches of {rows} rows (eval_batch_size)"
        batch_key = "eval_batch_size"
    else:
        what, batch_key = f"a train step of model {r.config.model.name!r}", "batch_size"
    check_fits(need, what, *memory_cause(r.ds, r.spec.layout, r.config, batch_key))
