"""The operator's admin token: made at the first start or on ``rondpoint admin-token rotate``, kept
hashed in the store and in clear in one file of the data directory, readable by its owner only."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from gateway.store.sqlite import Store

ADMIN_TOKEN_FILE = "admin-token"
DATABASE_FILE = "rondpoint.sqlite3"


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_TOKEN_FILE


def new_admin_token(store: Store, data_dir: Path, label: str) -> str:
    """A new admin token, which replaces every other one in ``store`` and is written to the token
    file (mode 0600, replaced atomically, so a reader sees the old token or the new one)."""
    token = "rpa_" + secrets.token_urlsafe(32)
    store.replace_admin_tokens(token, label)
    _write_private(admin_token_path(data_dir), token + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
