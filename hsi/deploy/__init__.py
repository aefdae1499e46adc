"""Deployment: ONNX graphs, quantization, checks, export, prediction from an exported model, runtime."""
