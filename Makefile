# Two entry points for a fresh machine with only Python:
#   make demo   - create .venv (CPU torch), install mri_seg, run the demo
#   make test   - create .venv, install mri_seg[test], run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?= -q
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: venv demo test clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/python -m mri_seg.pipelines.demo --out demo-run

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-run
