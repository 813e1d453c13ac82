"""Heads by name, registered where they are defined (timm's ``@register_model``).

A head module declares, at the point of definition::

    @register_head("aura", version=5, config=AuraConfig, tasks=("fer", "va", "au"), inputs=("global", "patch"))
    def aura(task, in_dim, n_outputs, config, n_patches=0) -> Head: ...

``version`` is the head's step version (bump it when its numerics change: old checkpoints are then
not reused); ``config`` is the dataclass of its options (``--option`` values; every other name is
refused with the valid ones listed); ``tasks`` are the task names it serves; ``inputs`` the kinds of
cached input it reads (``global`` vectors, ``patch`` tokens, ``pairs`` of windows: stages/training/head_inputs.py
loads each) and the resources it is handed besides
them (``text``: a ``PromptText`` of prompts per output; ``structure``: a signed class × AU table;
stages/training/head_resources.py loads, keys and describes each); ``presets`` the options a training
preset changes for this head (AURA: ``paper`` feeds the contextualiser the whole batch). This module knows no head: the
package imports the built-in ones, and users' heads arrive as plugins — modules named in the
``affectflow.heads`` entry-point group of an installed package, or given as ``--plugin module``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from heads.base import Head
from heads.tasks import get_task

PLUGIN_GROUP = "affectflow.heads"
FEATURE_INPUTS = ("global", "patch", "pairs")  # the cached data a head reads; every other input is a resource
# Fields of a head's config that the head step fills in itself, never given as options
# (``label_names``: the task's output names, for heads whose structure follows them).
FIXED_FIELDS = ("task", "in_dim", "n_outputs", "label_names")


@dataclass(frozen=True)
class HeadEntry:
    name: str
    version: int
    config: type
    tasks: tuple[str, ...]
    inputs: tuple[str, ...]
    build: Callable[..., Head]
    presets: dict[str, dict[str, Any]]  # per training preset, the options it changes

    @property
    def resources(self) -> tuple[str, ...]:
        """What the head is handed besides features (``text``, ``structure`` …), in ``inputs`` order."""
        return tuple(name for name in self.inputs if name not in FEATURE_INPUTS)

    @property
    def options(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.config) if f.name not in FIXED_FIELDS]

    def check(self, task: str, options: dict[str, Any]) -> None:
        """Refuse a task the head does not serve and option names it does not have (before any work)."""
        get_task(task)
        if task not in self.tasks:
            raise ValueError(f"head {self.name!r} serves tasks {', '.join(self.tasks)}, not {task!r}")
        if unknown := sorted(set(options) - set(self.options)):
            valid = ", ".join(self.options) or "none"
            raise ValueError(f"head {self.name!r} has no option {', '.join(unknown)}; its options: {valid}")

    def option_values(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every option's value: ``options`` over the config's defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(self.config) if f.name not in FIXED_FIELDS}
        return {**defaults, **options}

    def preset_options(self, preset: str, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` over what the training ``preset`` sets for this head (the user's win)."""
        return {**self.presets.get(preset, {}), **options}

    def make_config(
        self, task: str, in_dim: int, n_outputs: int, options: dict[str, Any], label_names: tuple[str, ...] = ()
    ) -> Any:
        """The head's config from user options, refusing names it does not have."""
        self.check(task, options)
        fixed = {"task": task, "in_dim": in_dim, "n_outputs": n_outputs, "label_names": tuple(label_names)}
        fields = {f.name for f in dataclasses.fields(self.config)}
        try:
            return self.config(**{k: v for k, v in fixed.items() if k in fields}, **options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"head {self.name!r}: bad options {options}: {err}") from None


HEADS: dict[str, HeadEntry] = {}


def register_head(
    name: str,
    *,
    version: int,
    config: type,
    tasks: tuple[str, ...],
    inputs: tuple[str, ...] = ("global",),
    presets: dict[str, dict[str, Any]] | None = None,
) -> Callable[[Callable[..., Head]], Callable[..., Head]]:
    def wrap(build: Callable[..., Head]) -> Callable[..., Head]:
        if name in HEADS and HEADS[name].build is not build:
            raise ValueError(f"head {name!r} is registered twice ({HEADS[name].build.__module__}, {build.__module__})")
        HEADS[name] = HeadEntry(name, version, config, tuple(tasks), tuple(inputs), build, dict(presets or {}))
        return build

    return wrap


def load_plugins(modules: list[str] = ()) -> None:
    """Import plugin modules (their heads and tasks register on import): the installed entry points
    of ``affectflow.heads``, then ``modules``."""
    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"plugin {module!r} cannot be imported: {err}") from None


def get_head(name: str, module: str | None = None) -> HeadEntry:
    """The head registered as ``name``; when it is not, the installed plugins and ``module`` (where a
    stored head says it was defined) are imported first."""
    if name not in HEADS:
        load_plugins([module] if module else [])
    if name not in HEADS:
        raise ValueError(
            f"unknown head {name!r}; registered: {', '.join(sorted(HEADS))} "
            f"(plugins: the {PLUGIN_GROUP!r} entry-point group, or --plugin MODULE)"
        )
    return HEADS[name]


def list_heads() -> list[str]:
    return sorted(HEADS)


def create_head(
    name: str,
    task: str,
    in_dim: int,
    n_outputs: int,
    n_patches: int = 0,
    label_names: tuple[str, ...] = (),
    resources: Mapping[str, Any] | None = None,
    **options: Any,
) -> Head:
    """Build head ``name`` for ``task`` on ``in_dim``-wide inputs (``n_patches`` tokens when patched;
    ``label_names``: the outputs' names; ``resources``: what the head reads besides features, by
    name — ``{"text": PromptText(…)}`` for heads that read prompts)."""
    entry = get_head(name)
    config = entry.make_config(task, in_dim, n_outputs, options, label_names)
    extra: dict[str, Any] = {}
    if "patch" in entry.inputs:
        extra["n_patches"] = n_patches
    elif n_patches:
        raise ValueError(f"head {name!r} reads {', '.join(entry.inputs)} features, not patch tokens")
    resources = dict(resources or {})
    if missing := [r for r in entry.resources if r not in resources]:
        raise ValueError(f"head {name!r} reads {', '.join(missing)}: give resources={{name: value}}")
    if unused := sorted(set(resources) - set(entry.resources)):
        raise ValueError(f"head {name!r} reads no {', '.join(unused)}")
    extra.update(resources)
    return entry.build(task=task, in_dim=in_dim, n_outputs=n_outputs, config=config, **extra)
