"""Readable names for step groups: ``rafdb/clip-vit-b-16`` for ``features/rafdb/clip-vit-b-16/<key>``.

A selector is a group's full path, or ``[FOLDER/]PART/…[/KEY-PREFIX]`` whose parts each match the
path's part at the same depth exactly or as its start (case-insensitive), so ``rafdb/open_clip``
finds ``features/rafdb/open_clip-ViT-B-16-my_checkpoint/<key>``. FOLDER (``features``, ``heads``,
``sources``…) defaults to the command's. Groups matching every part exactly win over prefix
matches. A command that needs one group takes the only complete match; anything else is an error
that lists the candidates with their specs, so the user can add the key's first characters.
"""

from __future__ import annotations

import json

from featurestore.completion import StepGroup
from featurestore.store import FeatureStore

FOLDERS = ("sources", "features", "heads", "lexicon")


class SelectorError(ValueError):
    pass


def _matches(selector: list[str], path: list[str]) -> str | None:
    """ "exact", "prefix" or None: how ``selector``'s parts match the start of ``path``'s."""
    if len(selector) > len(path):
        return None
    how = "exact"
    for want, have in zip(selector, path, strict=False):
        want, have = want.lower(), have.lower()
        if have == want:
            continue
        if not have.startswith(want):
            return None
        how = "prefix"
    return how


def select_groups(store: FeatureStore, selector: str, folder: str) -> list[StepGroup]:
    """Every group the selector names (complete or not), exact matches only when there are any."""
    selector = selector.strip("/")
    found = store.open_step(selector)
    if found is not None:  # a full path
        return [found]
    parts = selector.split("/")
    if parts[0] not in FOLDERS:
        parts = [folder, *parts]
    groups = store.list_steps(parts[0])
    matched = [(how, g) for g in groups if (how := _matches(parts, g.path.split("/")))]
    exact = [g for how, g in matched if how == "exact"]
    return exact or [g for _, g in matched]


def describe(group: StepGroup) -> str:
    """One line: the path, whether it is complete, and the spec's parameters."""
    meta = group.meta
    state = "complete" if meta.get("complete") else "incomplete"
    params = json.dumps(meta["spec"]["params"], sort_keys=True, default=str)
    return f"{group.path} ({state}, {group.n_samples} samples) {params[:300]}"


def select_group(store: FeatureStore, selector: str, folder: str) -> StepGroup:
    """The one complete group ``selector`` names, or a :class:`SelectorError` listing the candidates."""
    groups = select_groups(store, selector, folder)
    complete = [g for g in groups if g.is_complete]
    if len(complete) == 1:
        return complete[0]
    if not groups:
        nearby = store.list_steps(folder)
        hint = "; the store's groups here: " + ", ".join(g.path for g in nearby[:12]) if nearby else ""
        raise SelectorError(f"no {folder} group matches {selector!r} in {store.url}{hint}")
    what = "no complete group" if not complete else f"{len(complete)} complete groups"
    lines = "\n  ".join(describe(g) for g in groups)
    raise SelectorError(
        f"{what} match {selector!r}; name one by its path or add its key's first characters:\n  {lines}"
    )
