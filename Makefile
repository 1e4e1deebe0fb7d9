# Two commands for a newcomer:  make demo   |   make test
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test demo test test-fast mslite

install:
	$(PIP) install -e .

install-test:
	$(PIP) install -e ".[test]"

# Train AlignedReID++ on the synthetic dataset (generated on first use) and evaluate it.
demo: install
	$(PYTHON) tools/train_net.py --config-file configs/Demo/alignedpp_demo.yml

# The whole test suite (CI runs this).
test: install-test
	$(PYTHON) -m pytest -q tests

# Skip the slow end-to-end tests.
test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow" tests

# Optional: the MindSpore C++ inference API (from the mindspore-lite 2.0.0 wheel, ~170 MB once),
# so that the test suite also compiles the Ascend 310 program (skipped with a reason otherwise).
mslite:
	PYTHON=$(PYTHON) bash ascend310_infer/fetch_mslite.sh
