"""Networks, one module per family; checkpoints store each model's config beside its weights."""
