"""What survives a restart: the baseline store and the baseline lifecycle."""
