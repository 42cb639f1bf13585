"""Customer features as of a date, classification labels and feature selection."""
