# Two commands on a fresh machine with Python >= 3.10:
#   make train   set up .venv and train the default model on the bundled digits
#   make test    set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test test-slow docs lint bench clean

$(BIN)/aevb: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

train: $(BIN)/aevb
	$(BIN)/aevb train

test: $(BIN)/aevb
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n auto

# the long statistical and training tests (marked slow), not run by `make test`
test-slow: $(BIN)/aevb
	$(BIN)/pytest -n auto -m slow

# the documentation site from the docstrings and the README: build/docs/index.html
docs: $(BIN)/aevb
	$(BIN)/sphinx-build -W --keep-going -E -q -b html docs build/docs

bench: $(BIN)/aevb
	$(BIN)/python bench/train_throughput.py --repeats 5 --num-train 10000 --batches 100,500

clean:
	rm -rf $(VENV) runs
