"""Studies over many runs: multirun summaries, hyperparameter search, model cost profiles."""
