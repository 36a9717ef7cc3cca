"""The scheduled passes: read, fit, score and verdict, publish."""
