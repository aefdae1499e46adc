"""One run's machinery: config, validation, training, checkpoint, outputs, inference, prediction."""
