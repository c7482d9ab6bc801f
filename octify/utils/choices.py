"""The choices of octify's string options, in one place.

Kept free of torch so that the command line can declare its options (and answer ``--help``)
before torch is imported.
"""

__all__ = ["POLICIES", "STRIDE_MODES", "MEMORY_FORMATS", "EXPORT_FORMATS", "ONNX_EXPORTERS"]

POLICIES = ("default", "latency")
STRIDE_MODES = ("conv", "pool")
MEMORY_FORMATS = ("channels_last", "preserve")
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")
ONNX_EXPORTERS = ("dynamo", "legacy")
