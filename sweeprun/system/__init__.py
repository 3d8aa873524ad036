"""The operating system: process identity, path safety, storage faults, signals."""
