"""Sub-commands: show, diff, apply/branch/remove, queue, run, push/pull, gc, demo."""
