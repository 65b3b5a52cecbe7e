"""unet_core: a faithful, tested PyTorch replication of U-Net (Ronneberger et al. 2015).

The modules and the chapters that explain them are listed on the book's page "How the code is
organised" (``book/code_map.md``) and in the README.
"""

from unet_core.model import UNet, count_conv_layers, count_parameters, receptive_field

__all__ = ["UNet", "count_conv_layers", "count_parameters", "receptive_field"]
__version__ = "0.1.0"
