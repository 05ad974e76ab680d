"""realdata: filled by its issue."""
