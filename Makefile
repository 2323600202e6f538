# Two commands for a new user: `make demo` (set up, train, export, serve) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
RUN ?= runs/digits
REPOSITORY ?= models

.PHONY: setup demo test bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,export,module-export,serve,mnist,dev]'
	touch $@

demo: setup
	@test -f $(RUN)/config.json || $(BIN)/lutnet train --dataset digits --out $(RUN)
	@test -d $(REPOSITORY)/digits || $(BIN)/lutnet export $(RUN) --repository $(REPOSITORY) --name digits
	$(BIN)/lutnet serve --repository $(REPOSITORY) --port $(PORT)

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks all

clean:
	rm -rf $(VENV) runs models .pytest_cache .hypothesis
