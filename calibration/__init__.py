"""Calibration sets (degraded crops at the model's tile size) and the readers calibrators take."""

from edgesr.calibration.dataset import (
    CalibrationError,
    CalibrationSet,
    OrtCalibrationReader,
    build_calibration_set,
    evaluation_images,
)
from edgesr.calibration.degradations import DegradationConfig, degrade, synthetic_image

__all__ = [
    "CalibrationError",
    "CalibrationSet",
    "DegradationConfig",
    "OrtCalibrationReader",
    "build_calibration_set",
    "degrade",
    "evaluation_images",
    "synthetic_image",
]
