"""portraitcolor: colorize grayscale portraits with a U-Net trained in CIELAB space.

The public Python API:

    from portraitcolor import colorize_image, open_predictor, load_model
    colour = colorize_image("old.jpg")          # the default model, on the CPU without torch
    model = open_predictor("mymodel")           # a stored model, reused for many photos
    colour = colorize_image("old.jpg", model)   # -> PIL.Image at full resolution
    network = load_model()                      # the torch network (fine-tuning, GPUs)

Imports happen on first use, so `import portraitcolor` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "load_model", "open_predictor", "colorize_image"]


def __getattr__(name):
    if name == "load_model":
        from .torch_inference import load_model

        return load_model
    if name == "open_predictor":
        from .inference import open_predictor

        return open_predictor
    if name == "colorize_image":
        from .inference import colorize_image

        return colorize_image
    raise AttributeError(f"module 'portraitcolor' has no attribute {name!r}")
