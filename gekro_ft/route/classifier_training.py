"""Training the prompt classifier: will the local answer to this prompt need the frontier?

The model is TF-IDF over word 1-2-grams and character 2-4-grams (within words) feeding a
logistic regression, from scikit-learn. Why this and not a neural classifier: the data is
small (a calibration suite of dozens to thousands of prompts, plus the escalation log), a
linear model on n-grams learns from that without overfitting much, trains in seconds on a
CPU, gives a probability to set a threshold on, and is inspectable (a weight per n-gram);
at serving time it is a sparse dot product (well under a millisecond), so deciding costs
next to nothing in time to first token, where an embedding model would add a forward pass
per request. Character n-grams catch what words miss in short, messy prompts (ids, codes,
misspellings). ``class_weight="balanced"``: escalations are usually the minority.

Labels (1 = the local answer needs escalation):

- a calibration row (``route.json`` from ``gekro-ft route calibrate``) is 1 when its local
  answer failed one of the suite's checks (unusable: the deciding router escalates it
  anyway), or failed the suite's success metric while the frontier's answer passed it
  (escalating would have helped). A local failure the frontier shares is 0: sending it on
  costs the frontier's price and buys nothing.
- an escalation-log row is 1, except rows escalated by the classifier itself (its own
  guess, not evidence: learning from them would only reinforce it) and by the local
  upstream being down (that says nothing about the prompt); those are skipped and counted.

Held-out figures come from stratified k-fold cross-validation (each prediction made by a
model that did not see that prompt), at the threshold given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import atomic_output
from gekro_ft.errors import RouteError
from gekro_ft.route.escalations import KEY as ESCALATION_KEY
from gekro_ft.route.prompt_classifier import (KIND, SCHEMA_VERSION, build_vectorizer, checksum,
                                              prompt_text)

FEATURES = ({"analyzer": "word", "ngram_range": [1, 2], "lowercase": True, "sublinear_tf": True,
             "token_pattern": r"(?u)\b\w\w+\b"},
            # char_wb ignores the token pattern; it is stored so that every spec reads alike
            {"analyzer": "char_wb", "ngram_range": [2, 4], "lowercase": True, "sublinear_tf": True,
             "token_pattern": r"(?u)\b\w\w+\b"})
NOT_EVIDENCE = ("classifier", "local_error")  # escalation reasons that say nothing about the prompt
LABEL = ("1 = the local answer needs escalation: a calibration row whose local answer failed a "
         "check, or failed the success metric while the frontier passed it; every escalation-log "
         f"row except those escalated for {' or '.join(NOT_EVIDENCE)}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def needs_escalation(row: dict[str, Any], success: dict[str, Any]) -> bool:
    """A calibration row's label (see the module docstring)."""
    if row["failed_checks"]:
        return True
    metric, threshold = success["metric"], success["threshold"]
    try:
        local, frontier = row["local"]["metrics"][metric], row["frontier"]["metrics"][metric]
    except KeyError:
        raise RouteError(f"example {row.get('id')!r} has no {metric} row for both sides") from None
    # a NaN score is a failure, as in the eval's success rate: NaN >= t is False
    return not local >= threshold and frontier >= threshold


def calibration_rows(path: Path) -> tuple[list[str], list[int], dict[str, Any]]:
    """Texts and labels from a calibration report, the prompts from its suite, matched by id."""
    from gekro_ft.eval.runner import load_examples
    from gekro_ft.eval.suite import load_suite

    try:
        doc = orjson.loads(path.read_bytes())
        rows, inputs = doc["per_example"], doc["inputs"]
        suite = load_suite(inputs["suite_file"])
    except OSError as e:
        raise RouteError(f"{path}: cannot read the calibration report "
                         f"({e.strerror or e})") from None
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise RouteError(f"{path}: not a calibration report (route.json): {e}") from None
    prompts = {ex.id: ex.conv.prompt_messages() for ex in load_examples(suite)}
    missing = [r["id"] for r in rows if r["id"] not in prompts]
    if missing:
        raise RouteError(f"{path}: {len(missing)} example ids are not in {suite.source} "
                         f"(first: {missing[0]!r}); was the suite changed since calibrating?")
    texts = [prompt_text(prompts[r["id"]]) for r in rows]
    labels = [int(needs_escalation(r, inputs["success"])) for r in rows]
    source = {"kind": "calibration", "path": str(path), "sha256": _sha256(path),
              "suite_file": str(suite.source),
              "suite_data_sha256": _sha256(Path(suite.data_path())),
              "rows": len(rows), "positives": sum(labels)}
    return texts, labels, source


def escalation_rows(path: Path) -> tuple[list[str], list[int], dict[str, Any]]:
    """Texts (all positives) from an escalation log; a torn or unreadable line is skipped."""
    from gekro_ft.data.rows import read_rows

    if not path.is_file():
        raise RouteError(f"{path}: no such escalation log")
    texts, skipped = [], {"unreadable": 0, **{r: 0 for r in NOT_EVIDENCE}}
    for row in read_rows(path, "openai"):
        if row.conv is None:
            skipped["unreadable"] += 1
            continue
        reason = ((row.conv.extra or {}).get(ESCALATION_KEY) or {}).get("reason")
        if reason in NOT_EVIDENCE:
            skipped[reason] += 1
            continue
        texts.append(prompt_text(row.conv.prompt_messages()))
    source = {"kind": "escalations", "path": str(path), "sha256": _sha256(path), "rows": len(texts),
              "positives": len(texts), "skipped": skipped}
    return texts, [1] * len(texts), source


def _pipeline(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    model = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    return make_pipeline(make_union(*(build_vectorizer(spec) for spec in FEATURES)), model)


def cross_validate(texts: list[str], labels: list[int], folds: int, threshold: float,
                   seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy, recall and precision of the positive class, and the majority baseline."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels)
    k = min(folds, int(y.sum()), int(len(y) - y.sum()))
    if k < 2:
        raise RouteError(f"{len(y)} prompts with {int(y.sum())} needing escalation: need at least "
                         "2 of each label to train and cross-validate",
                         hint="calibrate on more examples, or add an escalation log")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    p = cross_val_predict(_pipeline(seed), texts, y, cv=cv, method="predict_proba")[:, 1]
    predicted = p >= threshold
    tp = int((predicted & (y == 1)).sum())
    return {"folds": k, "seed": seed, "threshold": threshold, "examples": len(y),
            "positives": int(y.sum()),
            "accuracy": float((predicted == (y == 1)).mean()),
            "recall": tp / int(y.sum()),
            "precision": tp / int(predicted.sum()) if predicted.any() else None,
            "predicted_escalation_rate": float(predicted.mean()),
            "majority_accuracy": float(max(y.mean(), 1 - y.mean()))}


def _top_terms(names: list[str], coef: Any, n: int = 15) -> dict[str, list[list[Any]]]:
    order = coef.argsort()
    return {"frontier": [[names[i], float(coef[i])] for i in order[::-1][:n]],
            "local": [[names[i], float(coef[i])] for i in order[:n]]}


def train_prompt_classifier(out: str | Path, calibration: list[Path] = (),
                            escalations: list[Path] = (), threshold: float = 0.5, folds: int = 5,
                            seed: int = 0) -> dict[str, Any]:
    """Train on every calibration report and escalation log given, cross-validate, fit on all,
    write the artifact to ``out`` (atomically) and return it."""
    if not calibration and not escalations:
        raise RouteError("give at least one calibration report (route.json) or escalation log")
    if not 0 < threshold < 1:
        raise RouteError(f"--threshold {threshold}: a probability strictly between 0 and 1")
    texts, labels, sources = [], [], []
    for read, paths in ((calibration_rows, calibration), (escalation_rows, escalations)):
        for path in paths:
            t, y, source = read(Path(path))
            texts += t
            labels += y
            sources.append(source)
    report = cross_validate(texts, labels, folds, threshold, seed)
    pipe = _pipeline(seed).fit(texts, labels)
    union, model = pipe.steps[0][1], pipe.steps[1][1]
    features, names = [], []
    for spec, (_, vectorizer) in zip(FEATURES, union.transformer_list):
        terms = vectorizer.get_feature_names_out().tolist()
        features.append({**spec, "terms": terms, "idf": vectorizer.idf_.tolist()})
        names += terms
    coef = model.coef_[0]
    doc = {"kind": KIND, "schema_version": SCHEMA_VERSION, "label": LABEL,
           "features": features, "model": {"type": "logistic_regression", "coef": coef.tolist(),
                                           "intercept": float(model.intercept_[0]),
                                           "class_weight": "balanced", "C": model.C},
           "training": {"examples": len(labels), "positives": sum(labels), "sources": sources},
           "cross_validation": report, "top_terms": _top_terms(names, coef)}
    doc["sha256"] = checksum(doc)
    with atomic_output(out, [*calibration, *escalations]) as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return doc
