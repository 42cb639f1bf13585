"""Metric functions on frames of labels, scores and predictions; they import no stage."""
