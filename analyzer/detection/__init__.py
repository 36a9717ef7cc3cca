"""Scores, regression verdicts, statistics and the notification budget."""
