"""Customer features as of a date, the labels models learn from, and feature selection."""
