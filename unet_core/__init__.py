"""unet_core: the paper, Ronneberger, Fischer & Brox (2015), in a small, typed, tested package.

It knows nothing of runs, devices or provenance (that is :mod:`unet_train`, built on it).
Its public surface, by the paper's sections:

* the network (Sec. 2, Fig. 1), :mod:`unet_core.model`: ``UNet`` (valid or same padding,
  crop-and-copy), ``DoubleConv``, ``center_crop``, ``count_parameters``,
  ``count_conv_layers``, ``receptive_field``;
* overlap-tile inference (Sec. 2, Fig. 2), :mod:`unet_core.tiling`: ``predict_tiled``,
  ``mirror_indices``, ``TilePlan``;
* the elastic deformation (Sec. 3.1), :mod:`unet_core.augment`: ``elastic_deform``,
  ``ElasticDeformation``, ``PaperAugmentation`` (with shifts, rotations, grey values),
  ``make_augmentation``;
* the weight map (Sec. 3, Eq. 2), :mod:`unet_core.weights`: ``weight_map``,
  ``instances_from_membranes``, ``balanced_class_weights``;
* the loss (Sec. 3, Eq. 1), :mod:`unet_core.losses`: ``weighted_cross_entropy``; and,
  secondary, the modern alternatives ``bce``, ``soft_dice``, ``bce_dice``, ``make_loss``;
* the data (Sec. 3.1, 4), :mod:`unet_core.data`: ``load_drive``, ``load_isbi2012``,
  ``resolve_dataset`` (real data, else a deterministic synthetic stand-in), ``PatchSampler``
  (random patches with mirrored context), ``load_data`` and ``isbi_folds`` (the splits);
* the evaluation (Sec. 4): :mod:`unet_core.metrics` (``segmentation_metrics``,
  ``evaluate_set``, ``best_threshold``, ``rand_error``, ``variation_of_information``,
  ``pixel_error``), the ISBI 2012 challenge's instruments :mod:`unet_core.challenge`
  (``challenge_scores``: V_rand and V_info after border thinning) and
  :mod:`unet_core.warping` (``warping_error``, the paper's Table 1 metric),
  :mod:`unet_core.thresholds` (``f1_optimum``).

Each module opens with the paper's words it implements and states its deviations. The
book's page "How the code is organised" (``book/code_map.md``) says which chapter explains
each module.
"""

from unet_core.model import UNet, count_conv_layers, count_parameters, receptive_field

__all__ = ["UNet", "count_conv_layers", "count_parameters", "receptive_field"]
__version__ = "0.1.0"
