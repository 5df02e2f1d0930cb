"""The prompt classifier artifact: what the router reads to decide from the prompt alone.

A plain JSON file (``gekro-ft route train-classifier`` writes it,
:mod:`gekro_ft.route.classifier_training`), safe to load: no pickle, only numbers and strings,
so it can be read, diffed and reviewed like any config. It holds:

- ``features``: the TF-IDF vectorizers in order, each with its settings (analyzer, n-gram
  range, lowercasing, sublinear tf, token pattern), its ``terms`` (term i is column i) and
  their ``idf``; the columns of all of them, concatenated, are the model's inputs;
- ``model``: the logistic regression's ``coef`` (one per column) and ``intercept``;
  P(needs escalation) = 1 / (1 + exp(-(x · coef + intercept)));
- ``label``, ``training`` (every source file's sha256, rows used and skipped, positives),
  ``cross_validation`` (held-out accuracy, recall, precision, the majority-class baseline),
  ``top_terms`` (the n-grams pushing hardest either way, for a reader);
- ``sha256``: of everything else (sorted-key JSON), so a file edited by hand or cut short is
  refused rather than served with the wrong numbers.

The vectorizers are scikit-learn's own, rebuilt from the stored vocabulary and idf, so a
prompt is tokenized exactly as in training; scikit-learn is imported only when one loads.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.errors import RouteError

KIND = "gekro-ft prompt classifier"
SCHEMA_VERSION = 1
ANALYZERS = ("word", "char_wb")


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """What the classifier reads of a request: each message as ``role: text``, one a line
    (content parts' text joined), so training rows and served requests read alike."""
    lines = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: only the text ones say anything here
            content = " ".join(p.get("text") or "" for p in content if isinstance(p, dict))
        lines.append(f"{m.get('role', 'user')}: {content or ''}")
    return "\n".join(lines)


def checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def build_vectorizer(spec: dict[str, Any], vocabulary: list[str] | None = None) -> Any:
    """A scikit-learn TF-IDF vectorizer with ``spec``'s settings (and a fixed vocabulary)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=spec["analyzer"], ngram_range=tuple(spec["ngram_range"]),
                           lowercase=spec["lowercase"], sublinear_tf=spec["sublinear_tf"],
                           token_pattern=spec["token_pattern"],
                           vocabulary={t: i for i, t in enumerate(vocabulary)}
                           if vocabulary else None)


@dataclass
class PromptClassifier:
    path: Path
    doc: dict[str, Any]
    vectorizers: list[Any]
    coef: Any  # numpy array, one weight per column
    intercept: float

    def probabilities(self, texts: list[str]) -> Any:
        """P(the local answer needs escalation) for each text."""
        import numpy as np
        from scipy.sparse import hstack

        x = hstack([v.transform(texts) for v in self.vectorizers]).tocsr()
        z = x @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def probability(self, messages: list[dict[str, Any]]) -> float:
        return float(self.probabilities([prompt_text(messages)])[0])


def load_prompt_classifier(path: str | Path) -> PromptClassifier:
    """Read and check an artifact; a file that is not one, or not whole, is an error naming it."""
    import numpy as np

    path = Path(path)

    def bad(problem: str) -> RouteError:
        return RouteError(f"{path}: {problem}",
                          hint="rewrite it with `gekro-ft route train-classifier`")

    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as e:
        raise bad(f"cannot read the prompt classifier ({e.strerror or e})") from None
    except orjson.JSONDecodeError as e:
        raise bad(f"not a prompt classifier: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise bad(f"not a prompt classifier (its kind is not {KIND!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise bad(f"schema_version {doc.get('schema_version')!r}; "
                  f"this gekro-ft reads {SCHEMA_VERSION}")
    if doc.get("sha256") != checksum(doc):
        raise bad("its sha256 does not match its contents (edited or damaged)")
    try:
        specs, model = doc["features"], doc["model"]
        columns = 0
        for spec in specs:
            if spec["analyzer"] not in ANALYZERS:
                raise bad(f"unknown analyzer {spec['analyzer']!r} (one of {', '.join(ANALYZERS)})")
            if len(spec["terms"]) != len(spec["idf"]):
                raise bad(f"a {spec['analyzer']} vectorizer has {len(spec['terms'])} terms but "
                          f"{len(spec['idf'])} idf values")
            columns += len(spec["terms"])
        coef = np.asarray(model["coef"], dtype=np.float64)
        intercept = float(model["intercept"])
    except (KeyError, TypeError, ValueError) as e:
        raise bad(f"not a prompt classifier: missing or malformed {e}") from None
    if coef.shape != (columns,) or not (np.isfinite(coef).all() and math.isfinite(intercept)):
        raise bad(f"the model has {coef.size} coefficients for {columns} feature columns")
    vectorizers = []
    for spec in specs:
        v = build_vectorizer(spec, spec["terms"])
        v.idf_ = np.asarray(spec["idf"], dtype=np.float64)
        vectorizers.append(v)
    return PromptClassifier(path, doc, vectorizers, coef, intercept)
