# The two commands of the README: `make chat` and `make test`. Both set up .venv on first use.
VENV := .venv
STAMP := $(VENV)/.ming-installed

.PHONY: setup browser chat test test-all test-fast clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

chat: $(STAMP)
	$(VENV)/bin/ming chat

browser: $(STAMP)
	@(command -v chromium >/dev/null 2>&1 && dpkg -s fonts-wqy-microhei >/dev/null 2>&1) || bash scripts/setup.sh --browser

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile

test-all: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile -m ""

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow and not browser"

clean-venv:
	rm -rf $(VENV)
