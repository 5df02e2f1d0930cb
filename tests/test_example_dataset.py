"""The shipped example dataset: reproducible from its script, clean under validation."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import DATASETS
from gekro_ft.data.validate import validate_file

SHIPPED = sorted(DATASETS.rglob("*.jsonl"))


def test_regenerating_gives_the_same_bytes(tmp_path):
    spec = importlib.util.spec_from_file_location("make", DATASETS / "make_ticket_extraction.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    make.write_all(tmp_path)
    for schema in ("openai", "alpaca", "sharegpt"):
        assert (tmp_path / f"{schema}.jsonl").read_bytes() == (DATASETS / "ticket-extraction" / f"{schema}.jsonl").read_bytes()


def test_there_is_something_to_check():
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(DATASETS)))
def test_shipped_datasets_validate_clean(path):
    report = validate_file(path)
    assert report.errors == 0 and report.warnings == 0, report.findings[:5]
    assert report.rows >= 100
