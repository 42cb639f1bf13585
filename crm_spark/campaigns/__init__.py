"""Campaigns: audiences from the gold outputs, and their export for marketing tools."""
