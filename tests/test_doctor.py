"""``gekro-ft doctor``: a template or stop token that changed after training is named, for the
adapter directory, a merged export, a GGUF export and a running server."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gekro_ft.adapter import template_record, write_manifest
from gekro_ft.doctor import doctor


@pytest.fixture
def adapter(tmp_path, tokenizer):
    """An adapter directory as training leaves it, as far as the doctor reads: the real
    tokenizer's files and a manifest with the template record."""
    d = tmp_path / "adapter"
    tokenizer.save_pretrained(d)
    write_manifest(d, {"schema_version": 1, "base_model": {"name": "smollm2-135m-instruct"},
                       "chat_template": template_record(tokenizer)})
    return d


def copy_as_merged(adapter, tmp_path, eos_ids):
    merged = tmp_path / "merged"
    shutil.copytree(adapter, merged)
    (merged / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_ids}))
    return merged


def write_gguf(path, tokenizer, template):
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    # the first tokens by id are enough to name the eos token (id 2) and keep the file small
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])[:64]
    w.add_token_list([t for t, _ in vocab])
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return path


def test_copies_that_agree_with_training_are_ok(adapter, tmp_path, tokenizer):
    merged = copy_as_merged(adapter, tmp_path, [tokenizer.eos_token_id])
    gguf = write_gguf(tmp_path / "model.gguf", tokenizer, tokenizer.chat_template)
    report = doctor(adapter, merged=merged, gguf=gguf)
    assert report.ok, report.differences
    assert len(report.checked) == 3 and report.trained.eos_token == "<|im_end|>"


def test_a_changed_template_in_the_adapter_directory_is_named(adapter):
    jinja = adapter / "chat_template.jinja"
    jinja.write_text(jinja.read_text().replace("<|im_end|>", "<|end|>"))
    (d,) = doctor(adapter).differences
    assert (d.where, d.what) == ("adapter directory", "chat template")
    assert "<|end|>" in d.detail


def test_a_dropped_eos_in_a_merged_export_is_named(adapter, tmp_path):
    merged = copy_as_merged(adapter, tmp_path, [0])  # stops on <|endoftext|> only: never at a turn's end
    config = json.loads((merged / "tokenizer_config.json").read_text())
    del config["eos_token"]
    (merged / "tokenizer_config.json").write_text(json.dumps(config))
    found = {(d.what, d.detail) for d in doctor(adapter, merged=merged).differences}
    assert ("eos token", "trained with '<|im_end|>', here none is set") in found
    assert ("stop token id", "generation stops on [0], never on the trained eos id [2]") in found


def test_a_gguf_with_another_template_is_named(adapter, tmp_path, tokenizer):
    gguf = write_gguf(tmp_path / "model.gguf", tokenizer, "{{ messages[0]['content'] }}")
    (d,) = doctor(adapter, gguf=tmp_path).differences
    assert d.where == f"GGUF export {gguf}" and d.what == "chat template"


class _Answers(BaseHTTPRequestHandler):
    answer: dict = {}

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"index": 0, **self.answer}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_a_server_that_does_not_stop_is_named(adapter, server):
    _Answers.answer = {"message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}
    assert doctor(adapter, url=server).ok
    _Answers.answer = {"message": {"role": "assistant", "content": "OK<|im_end|>\n<|im_start|>user\nOK"},
                       "finish_reason": "length"}
    details = [d.detail for d in doctor(adapter, url=server).differences]
    assert details[0].startswith("the answer carries '<|im_end|>', '<|im_start|>' as text")
    assert details[1] == "the answer ran to max_tokens (128) instead of stopping on the eos token"


def test_cli_names_the_difference_and_exits_1(adapter, cli):
    assert cli("doctor", adapter).exit_code == 0
    (adapter / "chat_template.jinja").write_text("{{ messages }}")
    result = cli("doctor", adapter)
    assert result.exit_code == 1
    assert "adapter directory: chat template: differs from the trained one" in result.output
    assert json.loads(cli("doctor", adapter, "--json").output)["differences"][0]["what"] == "chat template"


def test_an_adapter_trained_before_the_record_is_checked_against_its_own_tokenizer(adapter, cli):
    manifest = json.loads((adapter / "gekro_ft.json").read_text())
    del manifest["chat_template"]
    (adapter / "gekro_ft.json").write_text(json.dumps(manifest))
    report = doctor(adapter)
    assert report.ok and "records no chat template" in report.notes[0]


@pytest.mark.slow
def test_a_trained_adapter_records_its_template_and_sources_and_passes_the_doctor(trained_adapter):
    """The real training run: the manifest keeps the template, eos token and each source's
    hash; MLflow has the hash as a tag; the doctor finds nothing to say."""
    import mlflow

    adapter, uri = trained_adapter
    manifest = json.loads((adapter / "gekro_ft.json").read_text())
    assert manifest["chat_template"]["eos_token"] == "<|im_end|>"
    assert manifest["chat_template"]["template"] == (adapter / "chat_template.jinja").read_text()
    (source,) = manifest["data_sources"]
    assert source["sha256"] == manifest["dataset_hash"] and source["train_rows"] > 0
    run = mlflow.MlflowClient(uri).get_run(manifest["mlflow_run_id"])
    assert run.data.tags["gekro_ft.source.0.sha256"] == source["sha256"]
    assert doctor(adapter).ok
