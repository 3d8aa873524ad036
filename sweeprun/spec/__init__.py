"""Reading what the user wrote: sweeps.yaml, params, overrides, names, collection."""
