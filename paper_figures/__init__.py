"""paper_figures: filled by its issue."""
