# unet-book: every target is one readable command. `make help` lists them.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Put the venv first on PATH so that Jupyter kernels started by nbval and jupyter-book run it.
export PATH := $(abspath $(BIN)):$(PATH)
# One data directory and one runs directory for the whole project, wherever a notebook runs.
export UNET_DATA_DIR ?= $(CURDIR)/data
export UNET_RUNS_DIR ?= $(CURDIR)/runs

.PHONY: help venv test unit nbtest lint book-cache book book-strict site-test sync bench quality \
	efficiency study clean

help:            ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)   ## create .venv and install the pinned dependencies and unet_core

test: $(STAMP)   ## the whole suite: ruff, pytest, nbval on every notebook (smoke profile)
	$(BIN)/ruff check unet_core unet_book tests benchmarks notebooks
	UNET_PROFILE=smoke $(BIN)/python -m pytest tests notebooks --nbval-lax --ignore=tests/site

unit: $(STAMP)   ## pytest unit tests only (fast)
	$(BIN)/python -m pytest tests --ignore=tests/site

nbtest: $(STAMP) ## nbval on the notebooks only (smoke profile: seconds of training each)
	UNET_PROFILE=smoke $(BIN)/python -m pytest notebooks --nbval-lax

lint: $(STAMP)   ## ruff
	$(BIN)/ruff check unet_core unet_book tests benchmarks notebooks

sync: $(STAMP)   ## re-pair every notebook with its py:percent twin (text is the source of truth)
	$(BIN)/jupytext --sync notebooks/*.py

# The execution cache is keyed by notebook text only: drop it when the profile, the data
# directory, the code that computes results or the data in it changed since the last build
# (unet_core.provenance), so a smoke build never serves a real one, and no page shows
# numbers made by older code or on other data.
BOOK_KEY = $(or $(UNET_PROFILE),cpu) $(UNET_DATA_DIR) $(shell $(BIN)/python -m unet_core.provenance --key)
book-cache: $(STAMP)
	@mkdir -p _build
	@[ "$$(cat _build/.book-key 2>/dev/null)" = "$(BOOK_KEY)" ] || \
	  { rm -rf _build/.jupyter_cache; echo "$(BOOK_KEY)" > _build/.book-key; }

book: $(STAMP) book-cache ## execute the notebooks and build the HTML book into _build/html
	$(BIN)/jupyter-book build . --builder html

book-strict: $(STAMP) book-cache ## as `book`; warnings are errors, a failing cell fails (CI)
	$(BIN)/jupyter-book build . --builder html -W -n --keep-going

site-test: $(STAMP) ## open the built book in headless Chromium: images, errors, navigation
	$(BIN)/python -m pytest tests/site -v

bench: $(STAMP)  ## throughput benchmark: writes benchmarks/results/throughput.json
	$(BIN)/python benchmarks/throughput.py

quality: $(STAMP)  ## time to quality: 3 seeds of the cpu profile, 15 normalised min each (~30 min)
	UNET_DATA_DIR=$${UNET_DATA_DIR:-../shared/data} $(BIN)/python benchmarks/drive_quality.py --seeds 3

efficiency: $(STAMP)  ## achieved training GFLOP/s over the matmul rate, and width 64 vs eager NCHW
	$(BIN)/python benchmarks/training_efficiency.py --widths 16

# One evidence study of unet_book.studies: trains its missing cells (resumable) and rewrites
# benchmarks/results/studies/$(NAME).json after each. CELLS=1 lists done and missing cells;
# ARMS=a,b and SEEDS=0,1 restrict the run. Real data: UNET_DATA_DIR=../shared/data make study ...
study: $(STAMP)  ## run one evidence study: make study NAME=drive_recipe [CELLS=1] [ARMS=..] [SEEDS=..]
	@test -n "$(NAME)" || { echo "make study: set NAME to one of: $$($(BIN)/python -c \
	  'from unet_book.studies import STUDIES; print(", ".join(STUDIES))')" >&2; exit 2; }
	$(BIN)/python benchmarks/study.py $(NAME) $(if $(CELLS),--cells) \
	  $(if $(ARMS),--arms $(ARMS)) $(if $(SEEDS),--seeds $(SEEDS))

clean:           ## remove build output (keeps .venv and runs/)
	rm -rf _build .jupyter_cache
