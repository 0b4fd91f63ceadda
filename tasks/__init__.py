"""LightningModules, one per task. They reach backbones only through `timm.create_model`."""
