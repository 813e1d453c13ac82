"""Structures G for the faithfulness audit: signed AU → class tables, and the PSPI pain score.

A structure (the FACR head's ``structure`` option) is one of

* ``prototypes``: the basic expressions' EMFACS prototypes (data/emfacs_prototypes.csv: every AU
  of a class's prototype rows is causal, +1);
* ``pain``: the PSPI composition (data/pain_pspi.csv, which cites it);
* ``generator``: the labelled face generator's own AU → expression rule (its ``PROTOTYPES``), the
  structure whose answer is known on the generated catalogue;
* a data file of (class, au, sign) edges;
* a trained CausalAffect head's step path (``heads/…/causal-au_fer/<key>``): its AU → expression
  edges whose |weight| reaches ``GRAPH_EDGE_FLOOR`` × the largest, signed as learned.

An AU a structure does not name for a class is irrelevant to it (0). Registered as the head
resource ``structure``: keyed on the file's digest (or the head's path, which holds its key).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from featurestore import FeatureStore, canonical_json
from heads.tasks import get_task
from stages.extraction.sources.labels import DATA, au_number, expression_prototypes
from stages.training.head_resources import Resource, register_resource

PAIN = DATA / "pain_pspi.csv"
EMFACS = DATA / "emfacs_prototypes.csv"
GRAPH_EDGE_FLOOR = 0.25  # a learned AU → expression edge counts from a quarter of the strongest one


def load_structure(path: str | Path = PAIN) -> dict[str, dict[str, int]]:
    """class → {AU name: sign} from a (class, au, sign) file; a bad row is an error naming its line."""
    path = Path(path)
    lines = [
        (n, line)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    out: dict[str, dict[str, int]] = {}
    for (n, _), row in zip(lines[1:], csv.DictReader(line for _, line in lines)):
        try:
            sign = int(row["sign"])
            au = f"AU{au_number(row['au'])}"
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{n}: a structure row is class, au, sign (+1 or -1): {err}") from None
        if sign not in (1, -1) or not row.get("class"):
            raise ValueError(f"{path}:{n}: sign must be +1 or -1 and class given, not {row}")
        out.setdefault(row["class"], {})[au] = sign
    return out


def prototype_structure(kind: str = "prototype") -> dict[str, dict[str, int]]:
    """class → {AU: +1} over the EMFACS rows of ``kind`` (prototype, or prototype and variant: "all")."""
    out: dict[str, dict[str, int]] = {}
    for expression, rows in expression_prototypes().items():
        for row_kind, aus in rows:
            if kind == "all" or row_kind == kind:
                out.setdefault(expression, {}).update(dict.fromkeys(aus, 1))
    return out


def structure_matrix(structure: dict[str, dict[str, int]], classes: list[str], aus: list[str]) -> np.ndarray:
    """G (C, M) in ``classes`` × ``aus`` order; a class or AU the structure does not name: zeros."""
    g = np.zeros((len(classes), len(aus)), np.int8)
    for c, name in enumerate(classes):
        for au, sign in structure.get(name, {}).items():
            if au in aus:
                g[c, aus.index(au)] = sign
    return g


def pspi(intensity: dict[int, float]) -> float:
    """Prkachin & Solomon's pain intensity from AU intensities (AU4/6/7/9/10 on 0–5, AU43 0 or 1; an
    AU not given is 0): AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43, from 0 to 16."""
    get = lambda au: float(intensity.get(au, 0.0))  # noqa: E731
    return get(4) + max(get(6), get(7)) + max(get(9), get(10)) + get(43)


# The labelled face generator's rule (stages/synthetic/face_generator.py draws its faces from it): each
# expression's prototype AUs. It lives here, where the audit's ``generator`` structure reads it,
# because no pipeline step imports the generator.
GENERATOR_PROTOTYPES: dict[str, frozenset[int]] = {
    "happiness": frozenset({12}),
    "sadness": frozenset({1, 4, 15}),
    "surprise": frozenset({1, 2, 5, 26}),
    "fear": frozenset({1, 2, 4, 5, 26}),
    "anger": frozenset({4, 5, 7}),
    "disgust": frozenset({10, 15}),
}


def generator_structure() -> dict[str, dict[str, int]]:
    """The face generator's rule: each expression's prototype AUs raise it."""
    return {name: {f"AU{au}": 1 for au in sorted(aus)} for name, aus in GENERATOR_PROTOTYPES.items()}


def graph_structure(store: FeatureStore, path: str) -> dict[str, dict[str, int]]:
    """The signed AU → expression edges of a trained graph head (CausalAffect's ``au_expression``)."""
    from stages.training.head_steps import load_head

    model, config = load_head(store, path)
    graphs = model.graphs()
    if "au_expression" not in graphs:
        raise ValueError(f"{path}: head {config['head']!r} has no AU → expression graph to take a structure from")
    w = graphs["au_expression"].cpu().numpy()  # (M, C)
    m = get_task("au_fer").n_aus(config["labels"])
    aus, classes = config["labels"][:m], config["labels"][m:]
    strong = np.abs(w) >= GRAPH_EDGE_FLOOR * np.abs(w).max()
    return {
        classes[c]: {aus[i]: int(np.sign(w[i, c])) for i in range(len(aus)) if strong[i, c]}
        for c in range(len(classes))
    }


NAMED = {"prototypes": EMFACS, "pain": PAIN}


def named_structure(store: FeatureStore | None, name: str) -> dict[str, dict[str, int]]:
    """The structure an option names: prototypes, pain, generator, a head step path or a file."""
    if name == "prototypes":
        return prototype_structure()
    if name == "generator":
        return generator_structure()
    if name.startswith("heads/"):
        if store is None:
            raise ValueError(f"structure {name!r} is a head: it needs the store")
        return graph_structure(store, name)
    path = NAMED.get(name, Path(name))
    if not path.is_file():
        raise ValueError(
            f"structure {name!r}: prototypes, pain, generator, a (class, au, sign) file or a causal head's path"
        )
    return load_structure(path)


def structure_key(options: dict[str, Any]) -> dict[str, Any]:
    """What G depends on: a file's digest, the generator's rule, or a head's path (its key is in it)."""
    name = options["structure"]
    if name == "generator":
        return {"generator": xxhash.xxh3_128_hexdigest(canonical_json(generator_structure()).encode())}
    if name.startswith("heads/"):
        return {"graph": name, "edge_floor": GRAPH_EDGE_FLOOR}
    if name == "prototypes":
        return {"prototypes": xxhash.xxh3_128_hexdigest(EMFACS.read_bytes())}
    path = NAMED.get(name, Path(name))
    if not path.is_file():
        named_structure(None, name)  # the error that lists the choices
    return {"file": xxhash.xxh3_128_hexdigest(path.read_bytes())}


def structure_of(store: FeatureStore, options: dict[str, Any], names: list[str]) -> torch.Tensor:
    """G (C, M) for an AU-then-class head whose outputs are ``names``: the AUs come first."""
    m = get_task("au_fer").n_aus(names)
    aus, classes = list(names[:m]), list(names[m:])
    g = structure_matrix(named_structure(store, options["structure"]), classes, aus)
    if not g.any():
        raise ValueError(
            f"structure {options['structure']!r} marks none of the AUs {', '.join(aus)} causal for any of "
            f"the classes {', '.join(classes)}"
        )
    return torch.from_numpy(g)


register_resource(
    Resource(
        "structure",
        key=structure_key,
        load=structure_of,
        describe=lambda g: {"matrix": g.tolist()},
        rebuild=lambda entry: torch.tensor(entry["matrix"], dtype=torch.int8),
    )
)
