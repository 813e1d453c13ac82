"""Stage 2: what trains and audits on the cached features — head inputs and data, the head step,
its resources and reports, LaScA's prompts and pairs, and the audits. It reads stage 1's groups
and label maps (stages/extraction); stage 1 never imports it."""

# The modules that register a head resource (text prompts, FACR's structure) or a head input kind
# (LaScA's window pairs), loaded with the package as heads/__init__.py loads the heads: whoever
# trains a head finds every kind registered, and no consumer imports a module for its side effect.
from stages.training import au_prompts, faithfulness_structures, lasca_steps  # noqa: E402, F401  (registration)
