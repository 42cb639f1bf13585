"""Ingest: reading raw sources into typed canonical rows, and the ledger of files read."""
