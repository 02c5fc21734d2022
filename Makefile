# make demo : set up (.venv) and run the built-in synthetic smoky demo
#             (make demo DEMO_CONFIG=configs/demo_radiometric.yaml: with a 16-bit radiometric IR camera)
# make test : set up (.venv) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_CONFIG ?= configs/demo.yaml

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)


setup: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: setup
	$(BIN)/python run_stream.py --config $(DEMO_CONFIG)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf out/ .pytest_cache
