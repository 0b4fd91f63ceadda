"""convzoo's Optuna sweeper for Hydra (see optuna_sweeper.py for why it is the project's own)."""
