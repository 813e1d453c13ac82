"""The one key mechanism: a step's key is a hash of the canonical JSON of its spec and inputs.

Only values that JSON represents exactly may enter a key. Anything else (a Path, an object, a
closure, NaN) raises :class:`UnhashableSpecError` instead of being hashed by ``repr`` or pickle,
which is how other caches end up with keys that change between runs or machines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import xxhash

KEY_HASH = "xxh3_128"


class UnhashableSpecError(TypeError):
    """A value that cannot be part of a step key (it has no canonical JSON form)."""


def _check(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnhashableSpecError(f"{where}: non-finite float {value!r} cannot be part of a key")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise UnhashableSpecError(f"{where}: key {k!r} is not a string")
            _check(item, f"{where}.{k}")
        return
    raise UnhashableSpecError(
        f"{where}: {type(value).__name__} has no canonical JSON form; convert it explicitly "
        "(paths to dataset-relative strings, arrays to digests) before it enters a step spec"
    )


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists, strict types."""
    _check(value, "spec")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_json(value: Any) -> str:
    return digest_bytes(canonical_json(value).encode("utf-8"))


@dataclass(frozen=True)
class StepSpec:
    """What a step computes. ``params`` hold only what changes the result.

    ``version`` is bumped by hand whenever a step's numerics change, so old groups are not reused.
    Knobs such as batch size, worker count or device stay out of ``params``.
    """

    step: str
    version: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "version": self.version, "params": self.params}


def step_key(spec: StepSpec, inputs: list[str] | tuple[str, ...] = ()) -> str:
    """Key of a step's output group: hash of ``{spec, inputs}`` (inputs are upstream keys)."""
    return digest_json({"spec": spec.to_json(), "inputs": list(inputs)})
