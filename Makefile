# Quick start: `make report` (installs everything, builds the full lab report), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR := /usr/share/datasets/fashion-mnist
PROFILE ?= full  # make report PROFILE=quick
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# WeasyPrint needs Pango (and HarfBuzz's subsetter to embed only the glyphs it uses);
# DejaVu has every Spanish glyph (á é í ó ú ñ ¿ ¡). Noto draws names and titles in other scripts
# (fonts-noto-core: most of them; fonts-noto-cjk: Chinese, Japanese, Korean; 137 MB together),
# as report.css's fallbacks. fontconfig's fc-list tells the build which characters no font has.
SYSTEM_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fontconfig \
	fonts-dejavu-core fonts-noto-core fonts-noto-cjk

.PHONY: report quick test lint install system-deps data clean

report: install data  ## the full lab (20 epochs): reports/latest/
	$(BIN)/dae-report build --profile $(PROFILE)

quick: install data  ## a small run of every stage, about two minutes on 2 cores
	$(BIN)/dae-report build --profile quick

test: install  ## the test suite, on the real subset committed under tests/data
	$(BIN)/python -m pytest

lint: install  ## the formatting and lint rules in pyproject.toml, as CI checks them
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

install: system-deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "dae-report needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dask,test]'
	touch $@

system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || ! command -v apt-get >/dev/null \
		|| $(SUDO) apt-get install -y $(SYSTEM_PACKAGES) \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y $(SYSTEM_PACKAGES); }

data:  ## Fashion-MNIST from Debian/Ubuntu where apt is available; else the build downloads it
	@[ -f $(DATA_DIR)/train-images-idx3-ubyte.gz ] || ! command -v apt-get >/dev/null \
		|| $(SUDO) apt-get install -y dataset-fashion-mnist \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; } \
		|| echo "dataset-fashion-mnist not installed: the build will try the Keras download"

clean:  ## remove the virtual environment (reports/ is kept)
	rm -rf $(VENV) *.egg-info
