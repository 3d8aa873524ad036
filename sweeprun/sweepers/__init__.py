"""What to run: grid and random expansion of sweep blocks."""
