"""The makemore notes, checked: every testable claim measured by one command, with a verdict.

    python scripts/notes_claims.py [--data PATH] [--quick] [--reuse] --out DIR
    python -m claims [--data PATH] [--quick] [--reuse] --out DIR       # the same

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

One module per concern: `budget` (steps and seeds), `verdict` (the rule), `helpers` (the
helper models, registered through `jax_makemore.models.register_model`, and the config files
the sweep command trains them from), `runner` (the project's commands as subprocesses),
`exact` (the exact demonstrations), one module per group of claims (`bigram`, `context`,
`initialisation`, `batchnorm`, `minibatch`), `report` and `cli`.
"""
