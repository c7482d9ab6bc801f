"""The choices of octify's string options, in one place.

Kept free of torch so that the command line can declare its options (and answer ``--help``)
before torch is imported.
"""

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "NORMALIZE_HELP", "POLICIES", "STRIDE_MODES", "MEMORY_FORMATS", "CALIBRATION_SPLITS", "KEEP_BEST", "EXPORT_FORMATS", "ONNX_EXPORTERS", "CONV3D_KERNELS", "FINETUNE_LOSSES", "OPTIMIZERS"]

POLICIES = ("default", "latency", "latency-rules")
STRIDE_MODES = ("conv", "pool")
MEMORY_FORMATS = ("channels_last", "preserve")
# With calibration data: the better of the measured and the default split on that data, or either one.
CALIBRATION_SPLITS = ("best", "measured", "default")
# Fine-tuning keeps the weights that measured best on held-out data by this measure ("last": no keeping).
KEEP_BEST = ("auto", "agreement", "rel_error", "cosine", "accuracy", "last")
# The distillation loss: chosen per output from what the original returns, or one for every output.
FINETUNE_LOSSES = ("auto", "kl", "cosine", "mse")
OPTIMIZERS = ("sgd", "adamw")
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")
ONNX_EXPORTERS = ("dynamo", "legacy")
# Which kernel a frozen model's 3-D convs run: torch's own choice (exports everywhere) or oneDNN always (eager CPU).
CONV3D_KERNELS = ("torch", "onednn")

# Images given as files are normalised as torchvision's ImageNet classifiers were trained, unless told otherwise.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZE_HELP = "'imagenet' (torchvision's mean and std), 'none' (pixels in [0, 1]), or MEAN/STD, e.g. 0.5/0.5 or 0.49,0.48,0.45/0.25,0.24,0.26"
