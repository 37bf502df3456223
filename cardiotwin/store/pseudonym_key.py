"""The pseudonym key: the secret behind keyed patient pseudonyms (``cardiotwin.imaging.deid``).

Taken from the environment variable ``CARDIOTWIN_PSEUDONYM_KEY`` (hex) if set, else from the file
``<root>/pseudonym.key``, created with 32 random bytes (mode 0600) on first use.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from cardiotwin.errors import InputError, StoreError

logger = logging.getLogger(__name__)

__all__ = ["ENV_PSEUDONYM_KEY", "PSEUDONYM_KEY_FILENAME", "load_pseudonym_key"]

ENV_PSEUDONYM_KEY = "CARDIOTWIN_PSEUDONYM_KEY"
"""Environment variable holding the pseudonym key as hexadecimal (>= 32 hex digits)."""

PSEUDONYM_KEY_FILENAME = "pseudonym.key"
"""The key file in the store's root, used when the environment variable is not set."""


def load_pseudonym_key(root: Path) -> bytes:
    """The pseudonym key of the store at ``root`` (see :meth:`cardiotwin.store.Store.pseudonym_key`).

    Raises
    ------
    InputError
        If ``CARDIOTWIN_PSEUDONYM_KEY`` is not hexadecimal or shorter than 16 bytes.
    StoreError
        If the key file is corrupted.
    """
    env = os.environ.get(ENV_PSEUDONYM_KEY)
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError:
            raise InputError(f"{ENV_PSEUDONYM_KEY} must be hexadecimal") from None
        if len(key) < 16:
            raise InputError(f"{ENV_PSEUDONYM_KEY} must hold at least 16 bytes (32 hex digits)")
        return key
    path = Path(root) / PSEUDONYM_KEY_FILENAME
    if not path.exists():
        key = os.urandom(32)
        try:
            # O_EXCL: if two processes race, exactly one creates the key, the other reads it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key.hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            logger.info("created a new pseudonym key in %s", path)
    for _ in range(50):  # the creating process may not have written it yet
        text = path.read_text(encoding="ascii").strip()
        if text:
            break
        time.sleep(0.01)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise StoreError(
            f"{path} is corrupted (not hexadecimal); restore it from a backup"
        ) from None
    if len(key) < 16:
        raise StoreError(f"{path} holds fewer than 16 bytes; restore it from a backup")
    return key
