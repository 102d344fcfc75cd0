# The two commands of the README: `make chat` and `make test`. Both set up .venv on first use.
VENV := .venv
STAMP := $(VENV)/.ming-installed

.PHONY: setup chat test test-all test-fast clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh --browser

setup: $(STAMP)

chat: $(STAMP)
	$(VENV)/bin/ming chat

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile -m ""

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow and not browser"

clean-venv:
	rm -rf $(VENV)
