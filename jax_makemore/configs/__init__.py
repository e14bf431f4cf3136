"""The named configs: `--config NAME` loads `NAME.py` of this package (a `get_config()` that
returns an ml_collections.ConfigDict). They are package data, so an install from a wheel has
them; files starting with `_` are not configs."""
