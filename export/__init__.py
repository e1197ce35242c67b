"""ONNX export with parity checks, export specs, quantization and its quality gate."""
