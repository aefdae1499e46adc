"""One run's machinery: config, validation, training, checkpoints, inference and the files a run writes."""
