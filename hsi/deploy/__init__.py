"""Deployment: ONNX graphs, int8 quantization, checks, export, torch-free prediction from an export."""
