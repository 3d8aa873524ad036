"""One invocation: command line, configuration, plugin manager, session."""
