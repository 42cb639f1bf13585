"""Recommendations: interactions, holdout splits, ALS with tuning, top-k serving, popularity and cold start."""
