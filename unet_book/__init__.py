"""unet_book: what the book's chapters measure and draw, on top of :mod:`unet_core`.

``unet_core`` is the paper in code (model, overlap-tile inference, deformation, weight map,
losses, metrics, training); this package holds the chapters' own analyses and figures and is
never imported by ``unet_core``:

* :mod:`.architecture`: layer tables, crops, receptive windows and the U of Fig. 1 (chapter 1).
* :mod:`.padding`, :mod:`.plotting`: the padding experiment and the tiling figures (chapter 2).
* :mod:`.augment_plots`: deformation statistics and figures (chapter 3).
* :mod:`.weight_plots`: the weight map's figures and measurements (chapter 4).
* :mod:`.experiments`: notebook parameters, load-or-train, time-budgeted runs, ablations
  (chapters 5-9).
* :mod:`.results`: results figures and tables (chapters 5-7, 9).
* :mod:`.explorer`: the mask explorer (chapter 8).
* :mod:`.tables`: Markdown tables for every chapter.
* :mod:`.source`: shows library source code in a chapter.
"""
