"""A model file for `octify convert examples/model.py`: build_model() returns torchvision's ResNet-50.

octify takes the first of build_model() / get_model() / create_model(), then a module-level
`model` instance, then the one nn.Module class of the file that builds without arguments.
"""
import torchvision


def build_model():
    # weights=None: random weights (no download). For trained ones, pass --weights CKPT,
    # or load them here, e.g. torchvision.models.resnet50(weights="IMAGENET1K_V2").
    return torchvision.models.resnet50(weights=None)
