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
	efficiency study clean lab mathjax onnxruntime-web

help:            ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip uninstall --quiet -y unet_core 2>/dev/null || true  # the distribution's old name
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)   ## create .venv and install the pinned dependencies and the three packages

# MathJax for the book's equations, served from the site (never a CDN): the npm package at a
# pinned version, its tarball checked against the registry's sha512, unpacked into _vendor/
# (html_static_path in _config.yml), only what the pages use: the TeX+MathML CHTML component,
# its fonts, the extensions it loads on demand and the menu's accessibility parts.
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA512  := Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==
MATHJAX         := _vendor/mathjax/.version-$(MATHJAX_VERSION)
$(MATHJAX):
	@command -v npm >/dev/null || { echo "make mathjax: npm not found (Debian: apt-get install npm)"; exit 1; }
	rm -rf _vendor/mathjax _vendor/.npm && mkdir -p _vendor/.npm
	cd _vendor/.npm && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	@got=$$(openssl dgst -sha512 -binary _vendor/.npm/mathjax-$(MATHJAX_VERSION).tgz | base64 -w0); \
	  [ "$$got" = "$(MATHJAX_SHA512)" ] || { echo "mathjax-$(MATHJAX_VERSION).tgz: sha512 $$got, want $(MATHJAX_SHA512)"; exit 1; }
	tar -xzf _vendor/.npm/mathjax-$(MATHJAX_VERSION).tgz -C _vendor/.npm
	mkdir -p _vendor/mathjax/output
	cd _vendor/.npm/package/es5 && cp -r tex-mml-chtml.js input ui a11y sre adaptors ../../../mathjax/ \
	  && cp -r output/chtml ../../../mathjax/output/
	cp _vendor/.npm/package/LICENSE _vendor/mathjax/
	rm -rf _vendor/.npm
	touch $@

mathjax: $(MATHJAX) ## MathJax $(MATHJAX_VERSION) (npm, pinned) into _vendor/ for the book

# onnxruntime-web, which runs the exported U-Net in the reader's browser (chapter 8), served
# from the site like MathJax: the pinned npm tarball, checked against the registry's sha512;
# only the WebAssembly build the page loads (the ES module, its loader and the SIMD binary)
# and the package's manifest (its licence: MIT), into _vendor/onnxruntime-web/.
ORT_WEB_VERSION := 1.31.1
ORT_WEB_SHA512  := 5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==
ORT_WEB         := _vendor/onnxruntime-web/.version-$(ORT_WEB_VERSION)
$(ORT_WEB):
	@command -v npm >/dev/null || { echo "make onnxruntime-web: npm not found (Debian: apt-get install npm)"; exit 1; }
	rm -rf _vendor/onnxruntime-web _vendor/.npm-ort && mkdir -p _vendor/.npm-ort _vendor/onnxruntime-web
	cd _vendor/.npm-ort && npm pack --silent onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null
	@got=$$(openssl dgst -sha512 -binary _vendor/.npm-ort/onnxruntime-web-$(ORT_WEB_VERSION).tgz | base64 -w0); \
	  [ "$$got" = "$(ORT_WEB_SHA512)" ] || { echo "onnxruntime-web-$(ORT_WEB_VERSION).tgz: sha512 $$got, want $(ORT_WEB_SHA512)"; exit 1; }
	tar -xzf _vendor/.npm-ort/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C _vendor/.npm-ort
	cd _vendor/.npm-ort/package && cp dist/ort.wasm.min.mjs dist/ort-wasm-simd-threaded.mjs \
	  dist/ort-wasm-simd-threaded.wasm package.json ../../onnxruntime-web/
	rm -rf _vendor/.npm-ort
	touch $@

onnxruntime-web: $(ORT_WEB) ## onnxruntime-web $(ORT_WEB_VERSION) (npm, pinned) into _vendor/ for chapter 8

test: $(STAMP)   ## the whole suite: ruff, pytest, nbval on every notebook (smoke profile)
	$(BIN)/ruff check unet_core unet_train unet_book tests benchmarks notebooks
	UNET_PROFILE=smoke $(BIN)/python -m pytest tests notebooks --nbval-lax --ignore=tests/site

unit: $(STAMP)   ## pytest unit tests only (fast)
	$(BIN)/python -m pytest tests --ignore=tests/site

nbtest: $(STAMP) ## nbval on the notebooks only (smoke profile: seconds of training each)
	UNET_PROFILE=smoke $(BIN)/python -m pytest notebooks --nbval-lax

lint: $(STAMP)   ## ruff
	$(BIN)/ruff check unet_core unet_train unet_book tests benchmarks notebooks

sync: $(STAMP)   ## re-pair every notebook with its py:percent twin (text is the source of truth)
	$(BIN)/jupytext --sync notebooks/*.py

# The execution cache is keyed by notebook text only: drop it when the profile, the data
# directory, the code that computes results or the data in it changed since the last build
# (unet_train.provenance), so a smoke build never serves a real one, and no page shows
# numbers made by older code or on other data. Sphinx's record of the pages it read goes too:
# without it an unchanged notebook is not read again and its page keeps the old outputs.
BOOK_KEY = $(or $(UNET_PROFILE),cpu) $(UNET_DATA_DIR) $(shell $(BIN)/python -m unet_train.provenance --key)
book-cache: $(STAMP)
	@mkdir -p _build
	@[ "$$(cat _build/.book-key 2>/dev/null)" = "$(BOOK_KEY)" ] || \
	  { rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute _build/html; \
	    echo "$(BOOK_KEY)" > _build/.book-key; }

book: $(STAMP) $(MATHJAX) $(ORT_WEB) book-cache ## execute the notebooks and build the HTML book into _build/html
	$(BIN)/jupyter-book build . --builder html

book-strict: $(STAMP) $(MATHJAX) $(ORT_WEB) book-cache ## as `book`; warnings are errors, a failing cell fails (CI)
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
study: $(STAMP)  ## run one evidence study: make study NAME=isbi_cv [CELLS=1] [ARMS=..] [SEEDS=..] [FOLDS=..] [RESCORE=1]
	@test -n "$(NAME)" || { echo "make study: set NAME to one of: $$($(BIN)/python -c \
	  'from unet_book.studies import STUDIES; print(", ".join(STUDIES))')" >&2; exit 2; }
	$(BIN)/python benchmarks/study.py $(NAME) $(if $(CELLS),--cells) \
	  $(if $(ARMS),--arms $(ARMS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(FOLDS),--folds $(FOLDS)) \
	  $(if $(RESCORE),--rescore)

# The chapters in JupyterLab: open notebooks/NN_*.ipynb (or the .py twin: right-click, Open
# With, Jupytext Notebook); jupytext's contents manager keeps the pair in sync on save.
LAB_PORT ?= 8888
lab: $(STAMP)    ## JupyterLab on the chapters, with UNET_DATA_DIR and UNET_RUNS_DIR set
	@echo "lab: data from $(UNET_DATA_DIR), runs in $(UNET_RUNS_DIR)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --port=$(LAB_PORT) \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

clean:           ## remove build output (keeps .venv and runs/)
	rm -rf _build .jupyter_cache
