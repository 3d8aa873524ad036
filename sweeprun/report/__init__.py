"""What the user sees while a run goes: terminal, live display, junit."""
