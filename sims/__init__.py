"""sims: filled by its issue."""
