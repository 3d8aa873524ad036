"""Where and how an experiment runs: scheduling, workspaces, stages, checkpoints."""
