"""Scoring eval answers against references: metric specs, per-example scores, aggregates.

A suite lists its metrics by name, or as a mapping with ``name:`` and options::

    metrics:
      - exact_match
      - name: json_schema
        schema: ticket.schema.json      # relative to the suite file, or an inline mapping
      - name: classification
        field: priority
        labels: [low, medium, high, urgent]

``build_metrics`` turns that list into ``Metric`` objects (every problem reported at once),
``score`` runs them over (prediction, reference) pairs. Each metric gives per-example scores
and its own aggregate: most aggregates are the mean over examples, classification's
macro-F1 is corpus-level. Every aggregate lies in [0, 1] and higher is better, so a gate
can compare any of them the same way. Aggregate names are the gate's vocabulary:

    exact_match, json_valid, json_schema_valid, field_precision, field_recall, field_f1,
    accuracy, macro_f1, rouge_l, chrf

Text is compared *normalized*: stripped, runs of whitespace collapsed to one space,
casefolded. JSON is parsed leniently in one respect only: models often wrap JSON in a
Markdown fence, so an answer that is exactly one ```` ```json ```` (or bare ```` ``` ````) fence
around the JSON counts as that JSON. Prose around the fence does not: a program reading
the answer would not accept it either. Only objects and arrays count as JSON answers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gekro_ft.errors import EvalError, MetricError

Row = dict[str, float | str | None]


# ---------------------------------------------------------------- text and JSON

def normalize_text(text: str) -> str:
    """Stripped, whitespace runs collapsed to one space, casefolded."""
    return " ".join(text.split()).casefold()


_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*?)\n?```\Z", re.S | re.I)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN/Infinity; JSON does not


def parse_json(text: str) -> dict | list | None:
    """The JSON object or array in ``text`` (bare, or the whole of one ```json fence); else None."""
    s = text.strip()
    fenced = _FENCE.match(s)
    if fenced:
        s = fenced.group(1)
    try:
        value = json.loads(s, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: strings compared normalized, keys exactly, 1 == 1.0, true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return normalize_text(a) == normalize_text(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a is None and b is None


def flatten(obj: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf fields by path. Lists and empty objects are leaves (compared whole); paths are
    tuples so that a key containing a dot cannot collide with a nested one."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in obj.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---------------------------------------------------------------- metrics

class Metric:
    """One metric: per-example scores, an aggregate, and what it needs of a reference."""

    name: ClassVar[str]
    example_keys: tuple[str, ...] = ()    # numeric per-example scores (usable as success.metric)
    aggregate_keys: tuple[str, ...] = ()

    def score_one(self, prediction: str, reference: str) -> Row:
        raise NotImplementedError

    def aggregate(self, rows: list[Row]) -> dict[str, float]:
        """Default: the mean over examples of each per-example score."""
        return {key: _mean([float(r[key]) for r in rows]) for key in self.aggregate_keys}

    def reference_problem(self, reference: str) -> str | None:
        """Why ``reference`` cannot be scored by this metric, or None."""
        return None


class ExactMatch(Metric):
    """1.0 when prediction and reference are equal: as JSON when both parse (key order,
    spacing and fences do not matter), else as normalized text."""

    name = "exact_match"
    example_keys = aggregate_keys = ("exact_match",)

    def score_one(self, prediction: str, reference: str) -> Row:
        p, r = parse_json(prediction), parse_json(reference)
        same = json_equal(p, r) if p is not None and r is not None \
            else normalize_text(prediction) == normalize_text(reference)
        return {"exact_match": float(same)}


class JsonValid(Metric):
    """1.0 when the prediction is a JSON object or array (a whole ```json fence allowed)."""

    name = "json_valid"
    example_keys = aggregate_keys = ("json_valid",)

    def score_one(self, prediction: str, reference: str) -> Row:
        return {"json_valid": float(parse_json(prediction) is not None)}


class JsonSchemaValid(Metric):
    """1.0 when the prediction parses (as for json_valid) and validates against the schema;
    ``json_schema_error`` says what failed first, for the report."""

    name = "json_schema"
    example_keys = aggregate_keys = ("json_schema_valid",)

    def __init__(self, schema: dict):
        from jsonschema.validators import validator_for

        self.validator = validator_for(schema)(schema)

    def score_one(self, prediction: str, reference: str) -> Row:
        from jsonschema.exceptions import best_match

        value = parse_json(prediction)
        if value is None:
            return {"json_schema_valid": 0.0, "json_schema_error": "not a JSON object or array"}
        error = best_match(self.validator.iter_errors(value))
        if error is None:
            return {"json_schema_valid": 1.0, "json_schema_error": None}
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return {"json_schema_valid": 0.0, "json_schema_error": f"{where}: {error.message}"[:200]}


class FieldF1(Metric):
    """Field-level precision, recall and F1 of the predicted JSON object against the reference's.

    Both are flattened to leaf paths (``flatten``); a predicted field is a true positive when
    the reference has the same path with an equal value (``json_equal``). precision =
    tp / predicted fields, recall = tp / reference fields, F1 their harmonic mean.
    Edge cases: a prediction that is not a JSON object scores 0, 0, 0; no fields on either
    side scores 1, 1, 1; no fields on one side only scores 0, 0, 0. Aggregates are means
    over examples (macro over examples, not pooled over fields).
    """

    name = "field_f1"
    example_keys = aggregate_keys = ("field_precision", "field_recall", "field_f1")

    def score_one(self, prediction: str, reference: str) -> Row:
        pred, ref = parse_json(prediction), parse_json(reference)
        if not isinstance(pred, dict) or not isinstance(ref, dict):
            return {"field_precision": 0.0, "field_recall": 0.0, "field_f1": 0.0}
        pf, rf = flatten(pred), flatten(ref)
        if not pf and not rf:
            return {"field_precision": 1.0, "field_recall": 1.0, "field_f1": 1.0}
        tp = sum(1 for path, value in pf.items() if path in rf and json_equal(value, rf[path]))
        precision = tp / len(pf) if pf else 0.0
        recall = tp / len(rf) if rf else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"field_precision": precision, "field_recall": recall, "field_f1": f1}

    def reference_problem(self, reference: str) -> str | None:
        return None if isinstance(parse_json(reference), dict) else "field_f1 needs a JSON object as reference"


class Classification(Metric):
    """Accuracy and macro-F1 over a fixed label set.

    The label is the whole normalized answer, or with ``field`` the value at that dotted path
    of the JSON object (numbers and booleans by their JSON text). Labels match normalized.
    A prediction outside the label set (or with no label at all) is wrong, and is counted as
    one extra "other" class: it costs the true class recall but costs no label in the set
    precision. Macro-F1 averages per-class F1 = 2tp / (2tp + fp + fn) over the labels of the
    set that occur in the references or predictions: a label nobody used has no F1 to give.
    """

    name = "classification"
    example_keys = ("label_correct",)
    aggregate_keys = ("accuracy", "macro_f1")

    def __init__(self, labels: list[str], field: str | None):
        self.labels = {normalize_text(label): label for label in labels}
        self.field = field.split(".") if field else None

    def label_of(self, text: str) -> str | None:
        """The label as written in the label set if it is one; else what was found, normalized."""
        if self.field is None:
            found = normalize_text(text)
        else:
            value: Any = parse_json(text)
            for key in self.field:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None or isinstance(value, (dict, list)):
                return None
            found = normalize_text(value if isinstance(value, str) else json.dumps(value))
        return self.labels.get(found, found[:80])

    def score_one(self, prediction: str, reference: str) -> Row:
        pred, ref = self.label_of(prediction), self.label_of(reference)
        correct = pred is not None and pred == ref and pred in self.labels.values()
        return {"label_correct": float(correct), "predicted_label": pred, "reference_label": ref}

    def aggregate(self, rows: list[Row]) -> dict[str, float]:
        f1s = []
        for label in self.labels.values():
            tp = sum(1 for r in rows if r["predicted_label"] == label and r["reference_label"] == label)
            fp = sum(1 for r in rows if r["predicted_label"] == label and r["reference_label"] != label)
            fn = sum(1 for r in rows if r["reference_label"] == label and r["predicted_label"] != label)
            if tp + fp + fn:
                f1s.append(2 * tp / (2 * tp + fp + fn))
        return {"accuracy": _mean([float(r["label_correct"]) for r in rows]),
                "macro_f1": _mean(f1s) if f1s else 0.0}

    def reference_problem(self, reference: str) -> str | None:
        label = self.label_of(reference)
        if label in self.labels.values():
            return None
        where = f"field {'.'.join(self.field)} " if self.field else ""
        return f"classification: reference {where}label {label!r} is not one of {list(self.labels.values())}"


class _Words:
    """rouge-score's tokenization (lowercase, alphanumeric runs) but Unicode-aware: the
    library's default drops every non-ASCII letter, which would score all non-English text 0."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.casefold())


class RougeL(Metric):
    """ROUGE-L F-measure (rouge-score, no stemming), mean of per-example scores.
    Two answers with no words at all score 1.0 (the library says 0)."""

    name = "rouge_l"
    example_keys = aggregate_keys = ("rouge_l",)

    def __init__(self):
        from rouge_score.rouge_scorer import RougeScorer  # imports nltk: seconds, so only here

        self.scorer = RougeScorer(["rougeL"], tokenizer=_Words())

    def score_one(self, prediction: str, reference: str) -> Row:
        if not _Words.tokenize(prediction) and not _Words.tokenize(reference):
            return {"rouge_l": 1.0}
        return {"rouge_l": self.scorer.score(reference, prediction)["rougeL"].fmeasure}


class Chrf(Metric):
    """chrF (sacrebleu ``CHRF()`` defaults: character 6-grams, beta 2, whitespace ignored),
    per example with ``sentence_score``, divided by 100 to lie in [0, 1]; the aggregate is the
    mean of the sentence scores (not sacrebleu's corpus score, which pools n-gram counts).
    Two answers with no characters but whitespace score 1.0 (sacrebleu says 0)."""

    name = "chrf"
    example_keys = aggregate_keys = ("chrf",)

    def __init__(self):
        from sacrebleu.metrics import CHRF

        self.chrf = CHRF()

    def score_one(self, prediction: str, reference: str) -> Row:
        if not prediction.split() and not reference.split():
            return {"chrf": 1.0}
        return {"chrf": self.chrf.sentence_score(prediction, [reference]).score / 100}


# ---------------------------------------------------------------- specs

class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def build(self, base_dir: Path) -> Metric:
        raise NotImplementedError


class ExactMatchSpec(_Spec):
    name: Literal["exact_match"]

    def build(self, base_dir: Path) -> Metric:
        return ExactMatch()


class JsonValidSpec(_Spec):
    name: Literal["json_valid"]

    def build(self, base_dir: Path) -> Metric:
        return JsonValid()


class JsonSchemaSpec(_Spec):
    name: Literal["json_schema"]
    schema_: str | dict[str, Any] = Field(alias="schema", description="A JSON Schema file (relative "
                                          "to the suite file's directory) or the schema inline.")

    def build(self, base_dir: Path) -> Metric:
        from jsonschema.exceptions import SchemaError

        schema, where = self.schema_, "schema (inline)"
        if isinstance(schema, str):
            path = Path(schema) if Path(schema).is_absolute() else Path(base_dir) / schema
            where = f"schema {path}"
            try:
                schema = json.loads(path.read_text())
            except OSError as e:
                raise MetricError([f"{where}: cannot read ({e.strerror or e})"]) from None
            except json.JSONDecodeError as e:
                raise MetricError([f"{where}:{e.lineno}: not valid JSON ({e.msg})"]) from None
        if not isinstance(schema, dict):
            raise MetricError([f"{where}: a JSON Schema is an object"])
        from jsonschema.validators import validator_for

        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as e:
            raise MetricError([f"{where}: not a valid JSON Schema ({e.message})"]) from None
        return JsonSchemaValid(schema)


class FieldF1Spec(_Spec):
    name: Literal["field_f1"]

    def build(self, base_dir: Path) -> Metric:
        return FieldF1()


class ClassificationSpec(_Spec):
    name: Literal["classification"]
    labels: list[str] = Field(min_length=2, description="The label set; matched normalized.")
    field: str | None = Field(None, description="Dotted path of the label in a JSON answer; "
                                                "default: the whole answer is the label.")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        normalized = [normalize_text(label) for label in labels]
        if "" in normalized:
            raise ValueError("labels must not be empty")
        if len(set(normalized)) != len(normalized):
            raise ValueError("labels must differ after normalization (whitespace, case)")
        return labels

    def build(self, base_dir: Path) -> Metric:
        return Classification(self.labels, self.field)


class RougeLSpec(_Spec):
    name: Literal["rouge_l"]

    def build(self, base_dir: Path) -> Metric:
        return RougeL()


class ChrfSpec(_Spec):
    name: Literal["chrf"]

    def build(self, base_dir: Path) -> Metric:
        return Chrf()


SPECS: dict[str, type[_Spec]] = {
    "exact_match": ExactMatchSpec, "json_valid": JsonValidSpec, "json_schema": JsonSchemaSpec,
    "field_f1": FieldF1Spec, "classification": ClassificationSpec, "rouge_l": RougeLSpec, "chrf": ChrfSpec,
}


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    if err["type"] == "missing":
        return f"{key}: required"
    return f"{key}: {err['msg'].removeprefix('Value error, ')}"


def build_metrics(specs: list, base_dir: Path, source: str | None = None) -> list[Metric]:
    """Metric objects from a suite's ``metrics:`` list; a ``MetricError`` lists every problem."""
    if not isinstance(specs, list) or not specs:
        raise MetricError(["metrics: a non-empty list of metric names or mappings"], source)
    known = ", ".join(SPECS)
    metrics: list[Metric] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(specs):
        where = f"metrics[{i}]"
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict):
            problems.append(f"{where}: a metric name or a mapping with name:, got {raw!r}")
            continue
        name = raw.get("name")
        if name not in SPECS:
            problems.append(f"{where}: unknown metric {name!r} (known: {known})" if name is not None
                            else f"{where}: name: required (known: {known})")
            continue
        where = f"{where} ({name})"
        if name in seen:
            problems.append(f"{where}: listed twice (also metrics[{seen[name]}])")
            continue
        seen[name] = i
        try:
            spec = SPECS[name].model_validate(raw)
        except ValidationError as e:
            problems += [f"{where}: {_describe(err)}" for err in e.errors()]
            continue
        try:
            metrics.append(spec.build(Path(base_dir)))
        except MetricError as e:
            problems += [f"{where}: {p}" for p in e.problems]
    if problems:
        raise MetricError(problems, source)
    return metrics


# ---------------------------------------------------------------- scoring

def example_score_names(metrics: list[Metric]) -> list[str]:
    """Per-example numeric scores the metrics give: the choices for a suite's success metric."""
    return [key for m in metrics for key in m.example_keys]


def aggregate_names(metrics: list[Metric]) -> list[str]:
    """Aggregate names the metrics give: what a gate may refer to."""
    return [key for m in metrics for key in m.aggregate_keys]


def check_references(metrics: list[Metric], references: list[str]) -> list[tuple[int, str]]:
    """(0-based example index, problem) for each reference a metric cannot score; run it
    before generating so that a bad eval set fails early."""
    return [(i, problem) for i, ref in enumerate(references) for m in metrics
            if (problem := m.reference_problem(ref)) is not None]


def score(metrics: list[Metric], predictions: list[str],
          references: list[str]) -> tuple[list[Row], dict[str, float]]:
    """Per-example score dicts (one per pair, all metrics merged) and the aggregate dict."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise EvalError("no examples to score")
    bad = check_references(metrics, references)
    if bad:
        shown = [f"example {i + 1}: {p}" for i, p in bad[:5]]
        raise MetricError(shown + ([f"and {len(bad) - 5} more"] if len(bad) > 5 else []), "references")
    rows: list[Row] = [{} for _ in predictions]
    aggregate: dict[str, float] = {}
    for metric in metrics:
        mine = [metric.score_one(p, r) for p, r in zip(predictions, references)]
        for row, part in zip(rows, mine):
            row.update(part)
        aggregate.update(metric.aggregate(mine))
    return rows, aggregate


def success_rate(per_example: list[Row], key: str, threshold: float) -> float:
    """Share of examples whose ``key`` score is >= ``threshold`` (a NaN score is a failure)."""
    if not per_example:
        raise EvalError("no examples to compute a success rate over")
    values = []
    for row in per_example:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            numeric = sorted(k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise EvalError(f"success metric {key!r} is not a per-example score "
                             f"(scores: {', '.join(numeric)})")
        values.append(value)
    return sum(1 for v in values if not math.isnan(v) and v >= threshold) / len(values)
