"""Model registry and the wrappers that put preprocessing inside the graph (torch needed)."""
