"""Training, splits, metrics, calibration and reports for the classifier."""
