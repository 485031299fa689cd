"""Writing one setting into the configuration file, keeping everything else of it (comments,
order, spacing) as it was.

Owns: `set_value`. Imports `errors` only.

Used by `newsletter preview set-password`, which writes `[preview] password_hash`. Only a
string value in a plain `[table]` is written: the key's line is replaced where it stands,
or added at the end of the table, or the table is added at the end of the file. The
result is read back with `tomllib` before it replaces the file, so a file this cannot
edit safely is left untouched and named in the error.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

from ..errors import ConfigError

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for every character we write.
    return json.dumps(value, ensure_ascii=False)


def set_value(path: Path, table: str, key: str, value: str) -> None:
    """Set `[table] key = "value"` in the TOML file at `path` (created when missing)."""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    lines = text.splitlines()
    line = f"{key} = {_toml_string(value)}"
    start = next((i for i, raw in enumerate(lines) if (m := _HEADER.match(raw)) and m.group(1) == table
                  and not raw.lstrip().startswith("[[")), None)
    if start is None:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{table}]", line]
    else:
        end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        found = next((i for i in range(start + 1, end) if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i])), None)
        if found is not None:
            lines[found] = line
        else:
            last = end
            while last > start + 1 and not lines[last - 1].strip():
                last -= 1
            lines.insert(last, line)
    result = "\n".join(lines) + "\n"
    try:
        written = tomllib.loads(result).get(table, {}).get(key)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: could not set [{table}] {key} safely ({exc}); add it by hand") from None
    if written != value:
        raise ConfigError(f"{path}: could not set [{table}] {key} safely; add it by hand")
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(result, encoding="utf-8")
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        temporary.replace(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written: {exc}") from None
