"""Model governance: what a model needs at runtime (contract), whether it may trade
(promotion decision), and where versions live (registry, which refuses a model whose
contract no longer matches the running feature code or its own file)."""
