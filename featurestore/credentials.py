"""Which storage options are credentials: a run's parameters (stored in Prefect's database, shown in
its UI, written into deployments) may carry only the others.

An option is secret-looking when its name (at any depth: ``client_kwargs`` and the like are
searched too) contains one of :data:`SECRET_WORDS`. Credentials reach the store the standard ways
instead: the cloud SDK's environment variables, profiles and instance roles (``AWS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``), fsspec's own configuration files
(``~/.config/fsspec/*.json``), or a Prefect Secret block named by ``--storage-secret`` that the run
reads inside itself (docs/store.md)."""

from __future__ import annotations

from typing import Any

SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "sas", "session", "auth")

SAFE_WAYS = (
    "give credentials the standard ways instead: the cloud SDK's environment variables or profile "
    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, "
    "AZURE_STORAGE_ACCOUNT_KEY …), fsspec's config file (~/.config/fsspec/s3.json), or a Prefect "
    "Secret block holding the options (--storage-secret NAME; docs/store.md)"
)


def secret_keys(options: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the secret-looking options in ``options`` (nested dicts searched)."""
    found = []
    for name, value in options.items():
        path = f"{prefix}{name}"
        if any(word in str(name).lower() for word in SECRET_WORDS):
            found.append(path)
        elif isinstance(value, dict):
            found += secret_keys(value, f"{path}.")
    return found


def refuse_secrets(options: dict[str, Any] | None, what: str = "storage options") -> None:
    """Raise when ``options`` (headed for a run's parameters) hold a secret-looking key; the message
    names the keys, never their values."""
    if found := secret_keys(options or {}):
        raise ValueError(
            f"{what} {', '.join(found)} look like credentials, and a run's parameters are stored in "
            f"Prefect's database and shown in its UI: {SAFE_WAYS}"
        )
