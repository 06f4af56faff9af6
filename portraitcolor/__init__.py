"""portraitcolor: colorize grayscale portraits with a U-Net trained in CIELAB space.

The public Python API:

    from portraitcolor import load_model, colorize_image
    model = load_model()                      # the default model (or a name / path)
    colour = colorize_image("old.jpg", model)  # -> PIL.Image at full resolution

Imports of torch happen on first use, so `import portraitcolor` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "load_model", "colorize_image"]


def __getattr__(name):
    if name == "load_model":
        from .colorize import load_model

        return load_model
    if name == "colorize_image":
        from .colorize import colorize_image

        return colorize_image
    raise AttributeError(f"module 'portraitcolor' has no attribute {name!r}")
