"""``gekro-ft doctor``: one chat template and one stop token from training to serving.

The commonest failure after fine-tuning is an adapter that never stops once exported or
served: the chat template or the end-of-turn token differs between training, the exported
model and the server. Training records both in the manifest (:func:`adapter.template_record`);
this compares that record with what each later copy uses, and names every difference:

- the adapter directory's tokenizer files (``chat_template.jinja`` or ``tokenizer_config.json``);
- a merged export (the same files, plus ``generation_config.json``'s ``eos_token_id``, which
  is what ``generate`` and vLLM stop on);
- a GGUF export (``tokenizer.chat_template`` and ``tokenizer.ggml.eos_token_id``, read with the
  ``gguf`` package, the reader llama.cpp ships);
- a running OpenAI-compatible server: a short chat request whose answer must end with
  ``finish_reason: stop`` and must not carry the stop token or template markers as text.

Files are read as JSON, not through transformers: the check is quick and imports no torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.adapter import read_manifest
from gekro_ft.errors import InputFileError

# <|im_end|>, <|eot_id|>, </s>, [INST]: text that only a template or a special token writes
_MARKER = re.compile(r"<\|[^|<>]{1,40}\|>|</s>|\[/?INST\]")


@dataclass
class TemplateRecord:
    """The template and stop token one place uses; None where it does not say."""

    where: str
    template: str | None
    eos_token: str | None
    eos_ids: tuple[int, ...] = ()  # the ids generation stops on, where the place says


@dataclass
class Difference:
    where: str
    what: str  # "chat template", "eos token", "stop", ...
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "what": self.what, "detail": self.detail}


@dataclass
class DoctorReport:
    adapter: str
    trained: TemplateRecord
    checked: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "adapter": self.adapter, "ok": self.ok,
                "trained": {"eos_token": self.trained.eos_token, "eos_ids": list(self.trained.eos_ids),
                            "has_template": self.trained.template is not None},
                "checked": self.checked, "differences": [d.to_dict() for d in self.differences],
                "notes": self.notes}


def doctor(adapter: str | Path, *, merged: str | Path | None = None, gguf: str | Path | None = None,
           url: str | None = None, model: str | None = None, timeout: float = 60.0) -> DoctorReport:
    """Compare the template and stop token recorded at training with every copy given."""
    adapter = Path(adapter)
    manifest = read_manifest(adapter)
    in_dir = tokenizer_dir_record(adapter, "adapter directory")
    recorded = manifest.get("chat_template")
    if isinstance(recorded, dict):
        trained = TemplateRecord("manifest", recorded.get("template"), recorded.get("eos_token"),
                                 _ids(recorded.get("eos_token_id")))
        report = DoctorReport(str(adapter), trained)
        compare(trained, in_dir, report)
    else:
        report = DoctorReport(str(adapter), in_dir)
        report.notes.append("the manifest records no chat template (trained before gekro-ft recorded one): "
                            "the adapter directory's tokenizer is the reference")
        report.checked.append(in_dir.where)
    if merged is not None:
        compare(report.trained, tokenizer_dir_record(Path(merged), f"merged export {merged}"), report)
    if gguf is not None:
        compare(report.trained, gguf_record(Path(gguf)), report)
    if url is not None:
        check_server(report, url, model or manifest.get("base_model", {}).get("name") or "default", timeout)
    return report


def compare(trained: TemplateRecord, found: TemplateRecord, report: DoctorReport) -> None:
    report.checked.append(found.where)
    if trained.template is not None and found.template != trained.template:
        report.differences.append(Difference(found.where, "chat template", _template_change(
            trained.template, found.template)))
    if trained.eos_token is not None and found.eos_token is not None and found.eos_token != trained.eos_token:
        report.differences.append(Difference(found.where, "eos token", f"trained with {trained.eos_token!r}, "
                                                                      f"here {found.eos_token!r}"))
    elif trained.eos_token is not None and found.eos_token is None:
        report.differences.append(Difference(found.where, "eos token", f"trained with {trained.eos_token!r}, "
                                                                      "here none is set"))
    if trained.eos_ids and found.eos_ids and not set(trained.eos_ids) & set(found.eos_ids):
        report.differences.append(Difference(found.where, "stop token id",
                                             f"generation stops on {list(found.eos_ids)}, never on the trained "
                                             f"eos id {list(trained.eos_ids)}"))


def _template_change(trained: str, found: str | None) -> str:
    if found is None:
        return "no chat template here; the trained one is missing"
    lines = difflib.unified_diff(trained.splitlines(), found.splitlines(), "trained", "here", lineterm="", n=0)
    diff = [line for line in lines if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    return "differs from the trained one: " + "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")


def tokenizer_dir_record(directory: Path, where: str) -> TemplateRecord:
    """What a saved tokenizer (Hugging Face files) uses: template, eos token, and the eos ids of
    ``generation_config.json`` when there is one."""
    config_path = directory / "tokenizer_config.json"
    if not config_path.is_file():
        raise InputFileError(directory, "no tokenizer_config.json: not a saved tokenizer or model directory")
    config = _json(config_path)
    jinja = directory / "chat_template.jinja"
    template = jinja.read_text() if jinja.is_file() else config.get("chat_template")
    if not isinstance(template, str):
        template = None
    eos = config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    ids: tuple[int, ...] = ()
    gen = directory / "generation_config.json"
    if gen.is_file():
        ids = _ids(_json(gen).get("eos_token_id"))
    elif "eos_token_id" in config:
        ids = _ids(config["eos_token_id"])
    elif eos is not None and (directory / "tokenizer.json").is_file():
        ids = _ids(_token_id(directory / "tokenizer.json", eos))
    return TemplateRecord(where, template, eos if isinstance(eos, str) else None, ids)


def gguf_record(path: Path) -> TemplateRecord:
    """What a GGUF file carries: ``tokenizer.chat_template`` and the eos token by id."""
    from gguf import GGUFReader

    files = sorted(path.glob("*.gguf")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise InputFileError(path, "no .gguf file here")
    try:
        reader = GGUFReader(str(files[0]))
    except Exception as e:  # gguf raises ValueError, struct.error... on a file that is not GGUF
        raise InputFileError(files[0], f"not a readable GGUF file: {e}") from None

    def value(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    template = value("tokenizer.chat_template")
    eos_id = value("tokenizer.ggml.eos_token_id")
    tokens = value("tokenizer.ggml.tokens")
    eos = tokens[eos_id] if isinstance(eos_id, int) and tokens and 0 <= eos_id < len(tokens) else None
    return TemplateRecord(f"GGUF export {files[0]}", template, eos, _ids(eos_id))


def check_server(report: DoctorReport, url: str, model: str, timeout: float) -> None:
    """Ask the server one short question; an answer that runs to ``max_tokens`` or carries the
    stop token (or another template marker) as text means it does not stop where training did."""
    import httpx

    where = f"server {url}"
    report.checked.append(where)
    endpoint = url.rstrip("/") + ("/chat/completions" if url.rstrip("/").endswith("/v1") else "/v1/chat/completions")
    body = {"model": model, "max_tokens": 128, "temperature": 0,
            "messages": [{"role": "user", "content": "Say OK."}]}
    try:
        r = httpx.post(endpoint, json=body, timeout=timeout)
        r.raise_for_status()
        choice = r.json()["choices"][0]
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
        report.differences.append(Difference(where, "no answer", f"POST {endpoint} failed: {e}"))
        return
    text = (choice.get("message") or {}).get("content") or ""
    leaked = set(_MARKER.findall(text))
    if report.trained.eos_token and report.trained.eos_token in text:
        leaked.add(report.trained.eos_token)
    if leaked:
        said = ", ".join(map(repr, sorted(leaked)))
        report.differences.append(Difference(where, "stop", f"the answer carries {said} as text: the server's "
                                                           "template or stop token is not the trained one"))
    if choice.get("finish_reason") == "length":
        report.differences.append(Difference(where, "stop", f"the answer ran to max_tokens ({body['max_tokens']}) "
                                                           "instead of stopping on the eos token"))


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise InputFileError(path, f"cannot read as JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InputFileError(path, "the top level must be an object")
    return doc


def _ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return ()


def _token_id(tokenizer_json: Path, token: str) -> int | None:
    doc = _json(tokenizer_json)
    for added in doc.get("added_tokens") or []:
        if isinstance(added, dict) and added.get("content") == token:
            return added.get("id")
    vocab = (doc.get("model") or {}).get("vocab")
    return vocab.get(token) if isinstance(vocab, dict) else None
