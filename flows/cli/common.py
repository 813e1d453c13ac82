"""What every command shares: the Typer app, the console, the store options and their parsing."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Frozen-encoder feature cache for affective computing."
)
console = Console()
if not console.is_terminal:  # logs and CI: keep table rows on one line instead of 80 columns
    console = Console(width=200)


# One set of store options for every command that opens a store.
StoreOpt = Annotated[str, typer.Option("--store", help="store directory or fsspec URL (s3://bucket/path)")]
StorageOpt = Annotated[
    list[str],
    typer.Option(
        "--storage-option",
        help="fsspec option key=value for the store (repeatable), e.g. endpoint_url=http://minio:9000",
    ),
]


SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--storage-secret",
        help="a Prefect Secret block holding the store's credentials as JSON (read inside the run)",
    ),
]


def cli_storage(storage_option: list[str]) -> dict[str, Any]:
    """The --storage-option values, refused when one looks like a credential (they become a run's
    parameters, stored in Prefect's database): credentials come the safe ways (docs/store.md)."""
    from featurestore.credentials import refuse_secrets

    options = key_values(storage_option, "--storage-option")
    try:
        refuse_secrets(options, "--storage-option")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    return options


def cli_store(store: str, storage_option: list[str], storage_secret: str | None = None, create: bool = False):
    """The FeatureStore the store options name (the Secret block read here, in this process); one
    that is not there is an error unless the command writes a new store (``create``)."""
    from featurestore import FeatureStore
    from featurestore.store import StoreError
    from flows.credentials import store_options

    try:
        return FeatureStore(store, store_options(cli_storage(storage_option), storage_secret), create=create)
    except StoreError as err:
        fail(err)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(parts: list[str], what: str) -> dict[str, Any]:
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"{what}: option {part!r} must be key=value")
        out[key] = _value(value)
    return out


def fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(2)


def head_paths(fstore, selectors: list[str]) -> list[str]:
    """Every complete head group the selectors name (a selector may name several: seeds, variants)."""
    from featurestore.selectors import SelectorError, select_groups

    paths = []
    for selector in selectors:
        complete = [g.path for g in select_groups(fstore, selector, "heads") if g.is_complete]
        if not complete:
            raise SelectorError(f"no complete head group matches {selector!r}; `affectflow results` lists them")
        paths += complete
    return list(dict.fromkeys(paths))
