"""LightningDataModules: one module per task. They know nothing of models."""
