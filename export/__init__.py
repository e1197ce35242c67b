"""ONNX export with parity checks, export specs and the ncnn importer."""
