"""Prepare: cleaning rules, entity resolution, silver tables and the data-quality report."""
