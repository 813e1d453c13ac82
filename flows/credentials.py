"""The store's options as a run uses them: the public ones it was given, plus the secret ones from a
Prefect Secret block read inside the run, so credentials never become a flow run's parameters."""

from __future__ import annotations

from typing import Any

from featurestore.credentials import refuse_secrets


def store_options(storage_options: dict[str, Any] | None, storage_secret: str | None = None) -> dict[str, Any]:
    """``storage_options`` (refused if any looks like a credential) merged with the options held by
    the Prefect Secret block ``storage_secret`` (a JSON object, e.g. {"key": …, "secret": …}); a
    name given by both is an error rather than a silent choice."""
    public = dict(storage_options or {})
    refuse_secrets(public, "storage options")
    if not storage_secret:
        return public
    from prefect.blocks.system import Secret

    try:
        held = Secret.load(storage_secret).get()
    except ValueError as err:
        raise ValueError(
            f"no Prefect Secret block {storage_secret!r} ({err}); create it with "
            "`Secret(value={...}).save(name)` or in the UI (docs/store.md)"
        ) from None
    if not isinstance(held, dict):
        raise ValueError(f"Secret block {storage_secret!r} must hold a JSON object of storage options, not a string")
    if both := sorted(set(public) & set(held)):
        raise ValueError(f"storage options {', '.join(both)} are given both as options and in {storage_secret!r}")
    return {**public, **held}
