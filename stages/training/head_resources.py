"""What a head reads besides cached features, handed to it by the head step: prompts, a structure G …

A head names them in its registered ``inputs`` (``("global", "text")``); each is registered here,
where it is defined (stages/training/au_prompts.py: ``text``; stages/training/faithfulness_structures.py:
``structure``), with four functions:

* ``key(options)``: what the resource depends on, for the head step's key (a data file's digest,
  an encoder's spec, a head step's path) — an edited file retrains the heads that read it;
* ``load(store, options, names)``: the object the head is built with, for outputs ``names``;
* ``describe(value)``: a JSON entry of config.json, so a stored head is rebuilt without the source;
* ``rebuild(entry)``: the object back from that entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featurestore import FeatureStore


@dataclass(frozen=True)
class Resource:
    name: str
    key: Callable[[dict[str, Any]], Any]
    load: Callable[[FeatureStore, dict[str, Any], list[str]], Any]
    describe: Callable[[Any], dict[str, Any]]
    rebuild: Callable[[dict[str, Any]], Any]


RESOURCES: dict[str, Resource] = {}


def register_resource(resource: Resource) -> Resource:
    if resource.name in RESOURCES and RESOURCES[resource.name] != resource:
        raise ValueError(f"head resource {resource.name!r} is registered twice")
    RESOURCES[resource.name] = resource
    return resource


def get_resource(name: str) -> Resource:
    if name not in RESOURCES:
        raise ValueError(f"no head resource {name!r}; registered: {', '.join(sorted(RESOURCES))}")
    return RESOURCES[name]


def resource_keys(names: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Each resource's part of the head step's key, by name."""
    return {name: get_resource(name).key(options) for name in names}


def load_resources(
    store: FeatureStore, names: tuple[str, ...], options: dict[str, Any], labels: list[str]
) -> dict[str, Any]:
    return {name: get_resource(name).load(store, options, labels) for name in names}


def describe_resources(values: dict[str, Any]) -> dict[str, Any]:
    return {name: get_resource(name).describe(value) for name, value in values.items()}


def rebuild_resources(names: tuple[str, ...], config: dict[str, Any]) -> dict[str, Any]:
    """The resources of a stored head from its config.json entries."""
    if missing := [name for name in names if name not in config]:
        raise ValueError(f"the stored head's config.json has no {', '.join(missing)} entry to rebuild it with")
    return {name: get_resource(name).rebuild(config[name]) for name in names}
