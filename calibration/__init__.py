"""Calibration sets and INT8 calibrators (see the quantization issue)."""
