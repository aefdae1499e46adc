"""Studies of many runs: searches (Optuna) and their pruning."""
