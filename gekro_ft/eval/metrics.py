"""Scoring eval answers against references: metrics, per-example scores, aggregates.

A suite lists its metrics by name, or as a mapping with ``name:`` and options::

    metrics:
      - exact_match
      - name: json_schema
        schema: ticket.schema.json      # relative to the suite file, or an inline mapping
      - name: classification
        field: priority
        labels: [low, medium, high, urgent]

Each entry is validated once, at load, into a typed ``Metric`` (a pydantic model per metric,
told apart by ``name``; ``MetricList`` is the field type, every problem reported at once);
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

import difflib
import functools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, TypeAdapter,
                      ValidationError, ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator,
                      field_validator, model_serializer, model_validator)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

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

class Metric(BaseModel):
    """One metric as a suite lists it (its options, validated at load) and its scoring:
    per-example scores, an aggregate, and what it needs of a reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    example_keys: ClassVar[tuple[str, ...]] = ()    # numeric per-example scores (usable as success.metric)
    aggregate_keys: ClassVar[tuple[str, ...]] = ()

    @model_serializer
    def _as_written(self) -> str | dict[str, Any]:
        """Back to the suite's form: the bare name when no option was given."""
        fields = type(self).model_fields
        given = [k for k in fields if k in self.model_fields_set and k != "name"]
        options = {fields[k].alias or k: getattr(self, k) for k in given}
        return {"name": self.name, **options} if options else self.name

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

    name: Literal["exact_match"] = "exact_match"
    example_keys = aggregate_keys = ("exact_match",)

    def score_one(self, prediction: str, reference: str) -> Row:
        p, r = parse_json(prediction), parse_json(reference)
        same = json_equal(p, r) if p is not None and r is not None \
            else normalize_text(prediction) == normalize_text(reference)
        return {"exact_match": float(same)}


class JsonValid(Metric):
    """1.0 when the prediction is a JSON object or array (a whole ```json fence allowed)."""

    name: Literal["json_valid"] = "json_valid"
    example_keys = aggregate_keys = ("json_valid",)

    def score_one(self, prediction: str, reference: str) -> Row:
        return {"json_valid": float(parse_json(prediction) is not None)}


class JsonSchemaValid(Metric):
    """1.0 when the prediction parses (as for json_valid) and validates against the schema;
    ``json_schema_error`` says what failed first, for the report."""

    name: Literal["json_schema"] = "json_schema"
    schema_: str | dict[str, Any] = Field(alias="schema", description="A JSON Schema file (relative "
                                          "to the suite file's directory) or the schema inline.")
    example_keys = aggregate_keys = ("json_schema_valid",)
    _validator: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> JsonSchemaValid:
        """Read and check the schema now, so a bad one fails the suite before any request."""
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        schema, where = self.schema_, "schema (inline)"
        if isinstance(schema, str):
            base_dir = Path((info.context or {}).get("base_dir", "."))  # the suite file's directory
            path = Path(schema) if Path(schema).is_absolute() else base_dir / schema
            where = f"schema {path}"
            try:
                schema = json.loads(path.read_text())
            except OSError as e:
                raise ValueError(f"{where}: cannot read ({e.strerror or e})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(schema, dict):
            raise ValueError(f"{where}: a JSON Schema is an object")
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as e:
            raise ValueError(f"{where}: not a valid JSON Schema ({e.message})") from None
        self._validator = validator_for(schema)(schema)
        return self

    def score_one(self, prediction: str, reference: str) -> Row:
        from jsonschema.exceptions import best_match

        value = parse_json(prediction)
        if value is None:
            return {"json_schema_valid": 0.0, "json_schema_error": "not a JSON object or array"}
        error = best_match(self._validator.iter_errors(value))
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

    name: Literal["field_f1"] = "field_f1"
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

    name: Literal["classification"] = "classification"
    labels: list[str] = Field(min_length=2, description="The label set; matched normalized.")
    field: str | None = Field(None, description="Dotted path of the label in a JSON answer; "
                                                "default: the whole answer is the label.")
    example_keys = ("label_correct",)
    aggregate_keys = ("accuracy", "macro_f1")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        normalized = [normalize_text(label) for label in labels]
        if "" in normalized:
            raise ValueError("labels must not be empty")
        if len(set(normalized)) != len(normalized):
            raise ValueError("labels must differ after normalization (whitespace, case)")
        return labels

    @property
    def by_normalized(self) -> dict[str, str]:
        return {normalize_text(label): label for label in self.labels}

    def label_of(self, text: str) -> str | None:
        """The label as written in the label set if it is one; else what was found, normalized."""
        if self.field is None:
            found = normalize_text(text)
        else:
            value: Any = parse_json(text)
            for key in self.field.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if value is None or isinstance(value, (dict, list)):
                return None
            found = normalize_text(value if isinstance(value, str) else json.dumps(value))
        return self.by_normalized.get(found, found[:80])

    def score_one(self, prediction: str, reference: str) -> Row:
        pred, ref = self.label_of(prediction), self.label_of(reference)
        correct = pred is not None and pred == ref and pred in self.labels
        return {"label_correct": float(correct), "predicted_label": pred, "reference_label": ref}

    def aggregate(self, rows: list[Row]) -> dict[str, float]:
        f1s = []
        for label in self.labels:
            tp = sum(1 for r in rows if r["predicted_label"] == label and r["reference_label"] == label)
            fp = sum(1 for r in rows if r["predicted_label"] == label and r["reference_label"] != label)
            fn = sum(1 for r in rows if r["reference_label"] == label and r["predicted_label"] != label)
            if tp + fp + fn:
                f1s.append(2 * tp / (2 * tp + fp + fn))
        return {"accuracy": _mean([float(r["label_correct"]) for r in rows]),
                "macro_f1": _mean(f1s) if f1s else 0.0}

    def reference_problem(self, reference: str) -> str | None:
        label = self.label_of(reference)
        if label in self.labels:
            return None
        where = f"field {self.field} " if self.field else ""
        return f"classification: reference {where}label {label!r} is not one of {self.labels}"


class _Words:
    """rouge-score's tokenization (lowercase, alphanumeric runs) but Unicode-aware: the
    library's default drops every non-ASCII letter, which would score all non-English text 0."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.casefold())


class RougeL(Metric):
    """ROUGE-L F-measure (rouge-score, no stemming), mean of per-example scores.
    Two answers with no words at all score 1.0 (the library says 0)."""

    name: Literal["rouge_l"] = "rouge_l"
    example_keys = aggregate_keys = ("rouge_l",)
    _scorer: Any = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        from rouge_score.rouge_scorer import RougeScorer  # imports nltk: seconds, so only here

        self._scorer = RougeScorer(["rougeL"], tokenizer=_Words())

    def score_one(self, prediction: str, reference: str) -> Row:
        if not _Words.tokenize(prediction) and not _Words.tokenize(reference):
            return {"rouge_l": 1.0}
        return {"rouge_l": self._scorer.score(reference, prediction)["rougeL"].fmeasure}


class Chrf(Metric):
    """chrF (sacrebleu ``CHRF()`` defaults: character 6-grams, beta 2, whitespace ignored),
    per example with ``sentence_score``, divided by 100 to lie in [0, 1]; the aggregate is the
    mean of the sentence scores (not sacrebleu's corpus score, which pools n-gram counts).
    Two answers with no characters but whitespace score 1.0 (sacrebleu says 0)."""

    name: Literal["chrf"] = "chrf"
    example_keys = aggregate_keys = ("chrf",)
    _chrf: Any = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF()

    def score_one(self, prediction: str, reference: str) -> Row:
        if not prediction.split() and not reference.split():
            return {"chrf": 1.0}
        return {"chrf": self._chrf.sentence_score(prediction, [reference]).score / 100}


# ---------------------------------------------------------------- a suite's metrics: list

METRICS = (ExactMatch, JsonValid, JsonSchemaValid, FieldF1, Classification, RougeL, Chrf)
KNOWN = tuple(m.model_fields["name"].default for m in METRICS)


def _named(raw: Any) -> Any:
    """A bare name is short for a mapping with only ``name:``."""
    if isinstance(raw, str):
        return {"name": raw}
    if not isinstance(raw, (dict, Metric)):
        raise PydanticCustomError("metric_type", "a metric name or a mapping with name:, got {got}",
                                  {"got": repr(raw)})
    return raw


def _each_once(value: Any, handler: ValidatorFunctionWrapHandler) -> list[Metric]:
    """The list validated item by item, plus a problem for each metric listed twice, all at once."""
    if not isinstance(value, list) or not value:
        raise PydanticCustomError("metrics_type", "a non-empty list of metric names or mappings")
    first: dict[str, int] = {}
    twice: list[InitErrorDetails] = []
    for i, raw in enumerate(value):
        name = raw.get("name") if isinstance(raw, dict) else getattr(raw, "name", raw)
        if name not in KNOWN:
            continue
        if name in first:
            why = PydanticCustomError("metric_twice", "listed twice (also metrics[{i}])", {"i": first[name]})
            twice.append(InitErrorDetails(type=why, loc=(i, name), input=raw))
        else:
            first[name] = i
    try:
        metrics = handler(value)
    except ValidationError as e:
        if not twice:
            raise
        found = [InitErrorDetails(type=PydanticCustomError(err["type"], err["msg"]), loc=err["loc"],
                                  input=err["input"]) for err in e.errors()]
        errors = sorted([*found, *twice], key=lambda d: d["loc"][0])  # in list order, as written
        raise ValidationError.from_exception_data("metrics", errors) from None
    if twice:
        raise ValidationError.from_exception_data("metrics", twice)
    return metrics


# A suite's ``metrics:``; validation context ``{"base_dir": DIR}`` resolves schema files.
MetricList = Annotated[list[Annotated[Union[METRICS], Field(discriminator="name"), BeforeValidator(_named)]],
                       WrapValidator(_each_once)]


def metric_problem(err: ErrorDetails, loc: tuple) -> str:
    """One line for an error in validating a metrics list; ``loc`` is its location in the list."""
    if not loc:
        return f"metrics: {err['msg']}"
    where = f"metrics[{loc[0]}]"
    if err["type"] == "union_tag_invalid":
        name = str(err["input"]["name"])
        close = difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.7)
        return (f"{where}: unknown metric {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f" (known: {', '.join(KNOWN)})")
    if err["type"] == "union_tag_not_found":
        return f"{where}: name: required (known: {', '.join(KNOWN)})"
    if len(loc) == 1:
        return f"{where}: {err['msg']}"
    where, key = f"{where} ({loc[1]})", ".".join(str(p) for p in loc[2:])
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {key!r}"
    if err["type"] == "missing":
        return f"{where}: {key}: required"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {key}: {msg}" if key else f"{where}: {msg}"


@functools.cache
def _list_adapter() -> TypeAdapter:
    return TypeAdapter(MetricList)


def build_metrics(specs: Any, base_dir: Path, source: str | None = None) -> list[Metric]:
    """Metrics from a ``metrics:`` list (names or mappings) outside a suite; a ``MetricError``
    lists every problem."""
    try:
        return _list_adapter().validate_python(specs, context={"base_dir": Path(base_dir)})
    except ValidationError as e:
        raise MetricError([metric_problem(err, err["loc"]) for err in e.errors()], source) from None


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
