"""The choices of octify's string options, in one place.

Kept free of torch so that the command line can declare its options (and answer ``--help``)
before torch is imported.
"""

__all__ = ["POLICIES", "STRIDE_MODES", "MEMORY_FORMATS", "CALIBRATION_SPLITS", "KEEP_BEST", "EXPORT_FORMATS", "ONNX_EXPORTERS"]

POLICIES = ("default", "latency")
STRIDE_MODES = ("conv", "pool")
MEMORY_FORMATS = ("channels_last", "preserve")
# With calibration data: the better of the measured and the default split on that data, or either one.
CALIBRATION_SPLITS = ("best", "measured", "default")
# Fine-tuning keeps the weights that measured best on held-out data by this measure ("last": no keeping).
KEEP_BEST = ("auto", "agreement", "rel_error", "accuracy", "last")
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")
ONNX_EXPORTERS = ("dynamo", "legacy")
