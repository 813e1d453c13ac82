"""Stage 2: what trains and audits on the cached features — head inputs and data, the head step,
its resources and reports, LaScA's prompts and pairs, and the audits. It reads stage 1's groups
and label maps (stages/extraction); stage 1 never imports it."""
