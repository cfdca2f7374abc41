"""Flower's password for `make run`: made once, kept in ``var/flower-password`` (mode 0600), so the
password a developer saved in the browser still works after the next `make run`."""

import os
import secrets
from pathlib import Path


def flower_password_get(*, path: Path) -> str:
    """The password stored at ``path``; a new one is made and stored there first if none is."""
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if password:
        return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    # Readable by its owner only, from the moment it exists (an empty file left behind too).
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return password
