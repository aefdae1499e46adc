"""One run's machinery: configuration, training, outputs and its TensorBoard dashboard."""
