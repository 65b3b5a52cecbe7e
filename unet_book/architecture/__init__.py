"""Look inside a U-Net: shapes, crops, parameters, receptive windows and the U of Fig. 1.

Chapter 1 (``notebooks/01_architecture.py``) uses this package. Everything here is *observed*
on a model rather than re-derived by hand. Modules, one concern each:

* :mod:`.trace` -- :func:`trace_shapes` records every operation of the paper's Fig. 1 with
  forward hooks (shapes, parameters, multiply-accumulates; a ``meta`` model is enough), and
  :func:`receptive_windows` measures which input pixels can influence an output pixel.
* :mod:`.tables` -- Markdown tables from a trace: :func:`layer_table`, :func:`crop_table`,
  :func:`level_table` (from :func:`level_costs`) and :func:`compare_table`.
* :mod:`.drawing` -- :func:`unet_layout` lays out the U of Fig. 1 from a trace without
  drawing, :func:`draw_unet` paints it with matplotlib, :func:`draw_receptive_windows` draws
  the measured windows on the pooling grid.

Every public name of the three modules is re-exported here: ``from unet_book.architecture
import trace_shapes, draw_unet``.
"""

from unet_book.architecture.drawing import (
    BOX_COLOR,
    BOX_EDGE,
    COLORS,
    CropLabel,
    LayoutArrow,
    LayoutBox,
    Point,
    Scale,
    UNetLayout,
    draw_receptive_windows,
    draw_unet,
    unet_layout,
)
from unet_book.architecture.tables import (
    Crop,
    LevelCost,
    compare_table,
    crop_table,
    crops,
    layer_table,
    level_costs,
    level_table,
)
from unet_book.architecture.trace import (
    OP_CONCAT,
    OP_CONV1,
    OP_CONV3,
    OP_CONV3_BN,
    OP_CROP,
    OP_DROPOUT,
    OP_INPUT,
    OP_POOL,
    OP_UPCONV,
    PATHS,
    Shape,
    TraceRow,
    receptive_windows,
    trace_shapes,
)

__all__ = [
    "BOX_COLOR",
    "BOX_EDGE",
    "COLORS",
    "OP_CONCAT",
    "OP_CONV1",
    "OP_CONV3",
    "OP_CONV3_BN",
    "OP_CROP",
    "OP_DROPOUT",
    "OP_INPUT",
    "OP_POOL",
    "OP_UPCONV",
    "PATHS",
    "Crop",
    "CropLabel",
    "LayoutArrow",
    "LayoutBox",
    "LevelCost",
    "Point",
    "Scale",
    "Shape",
    "TraceRow",
    "UNetLayout",
    "compare_table",
    "crop_table",
    "crops",
    "draw_receptive_windows",
    "draw_unet",
    "layer_table",
    "level_costs",
    "level_table",
    "receptive_windows",
    "trace_shapes",
    "unet_layout",
]
