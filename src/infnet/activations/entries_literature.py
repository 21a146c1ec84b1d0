"""Catalog entries: activations from recent literature (REFERENCES.md section 7)."""
