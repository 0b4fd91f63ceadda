"""Generators of synthetic data with labels exact by construction, for tasks no real data can ship."""
