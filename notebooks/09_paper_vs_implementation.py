# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chap-paper-vs-ours)=
# # Paper vs this implementation
#
# Every choice the paper {cite:p}`ronneberger2015unet` makes, next to what this project does
# by default (the `cpu` profile) and, where the book measured it, what the difference does.
# The `paper` profile (`-p profile paper` in {ref}`chap-training`) restores the paper's
# choices where the paper states them; the learning rate, the number of iterations and the
# drop-out rate it does not state.
#
# The measured column comes from the seeded studies of {ref}`chap-claims` (committed results
# files; each row names its claim, its verdict and its number of paired samples):
# `drive_recipe`, whose arms change one setting of the `cpu` profile back to the paper's,
# `drive_augmentation`, which compares augmentations like against like, and `isbi_cv`, the
# paper's own task in cross-validation, scored with the challenge's instruments (the thinned
# $V_\text{rand}$ at a threshold chosen on validation slices). Only cells made by the current
# code are shown as current. Throughput figures come from `benchmarks/throughput.py` (its lab notes
# are in `benchmarks/README.md`).

# %%
from IPython.display import Markdown, display

from unet_book.evidence import study_view
from unet_book.experiments import notebook_config
from unet_book.paper_table import MEASURED_STUDIES, paper_vs_implementation_table
from unet_book.results import benchmark_result
from unet_train.config import TrainConfig

cfg = notebook_config()
paper = TrainConfig.from_profile("paper")
views = {name: study_view(name) for name in MEASURED_STUDIES}
for name, view in views.items():
    print(f"{name}: {len(view.cells)} cells "
          + ("by the current code" if view.current else "by OLDER code (marked)"))

# %%
display(Markdown(paper_vs_implementation_table(cfg, paper, views,
                                               benchmark_result("throughput"))))
