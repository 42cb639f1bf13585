"""Deterministic synthetic CRM data with planted structure and ground truth."""
