"""twolayer: the idealized two-layer network of surgical fine-tuning (math only)."""
