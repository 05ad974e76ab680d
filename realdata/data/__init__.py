"""Dataset readers (one module per family) and the interface they share (:mod:`.base`)."""
