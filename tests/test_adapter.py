"""The adapter contract: one manifest writer and reader, one rule for the adapter's base model,
the same answer whether eval (adapter_base), serving (AdapterInfo) or export asks."""

from __future__ import annotations

import pytest

from gekro_ft.adapter import MANIFEST, adapter_base, inspect_adapter, read_manifest, write_manifest
from gekro_ft.errors import InputFileError
from tests.test_serve_profile import fake_adapter


def test_write_then_read_manifest_round_trips(tmp_path):
    manifest = {"schema_version": 1, "base_model": {"name": "m", "source": "/m", "kind": "local"},
                "metrics": {"train_loss": 0.5}}
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST == tmp_path / "gekro_ft.json"
    assert read_manifest(tmp_path) == manifest


def test_a_missing_manifest_names_the_directory_unless_allowed(tmp_path):
    with pytest.raises(InputFileError, match=f"{tmp_path}: no gekro_ft.json: not an adapter directory"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path, missing_ok=True) == {}


@pytest.mark.parametrize("text, message", [
    ("{", "gekro_ft.json: not valid JSON"),
    ("[1]", "gekro_ft.json: the top level must be an object"),
    ('{"base_model": "smollm2"}', "'base_model' must be an object with name, source, kind"),
])
def test_a_broken_manifest_names_its_path(tmp_path, text, message):
    (tmp_path / MANIFEST).write_text(text)
    for missing_ok in (False, True):
        with pytest.raises(InputFileError, match=message) as e:
            read_manifest(tmp_path, missing_ok=missing_ok)
        assert e.value.path == str(tmp_path / MANIFEST)


HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("config_base, manifest_base, expected", [
    (HUB_ID, {"name": "smollm2-135m-instruct", "source": "/x"}, "smollm2-135m-instruct"),
    (HUB_ID, None, HUB_ID),
    (HUB_ID, {"source": "/x"}, HUB_ID),
    (None, None, None),
])
def test_one_rule_for_the_base_model(tmp_path, config_base, manifest_base, expected):
    """The manifest's name wins (what the user asked for), else PEFT's base_model_name_or_path."""
    path = fake_adapter(tmp_path / "a", base=config_base, manifest_base=manifest_base)
    assert adapter_base(path) == inspect_adapter(path).base == expected

