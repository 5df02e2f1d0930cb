"""The routing decision, as pure functions of the request and the local answer: what the
profile's parts say, in the order :mod:`gekro_ft.route.profile` states. The server and the
calibration both decide here, so a calibrated threshold means the same thing when served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gekro_ft.route.checks import CheckSet
from gekro_ft.route.confidence import scores as confidence_scores
from gekro_ft.route.profile import RouteProfile

LOCAL, FRONTIER = "local", "frontier"


@dataclass
class Decision:
    upstream: str  # LOCAL or FRONTIER
    # rule, default, capacity, classifier, check, confidence, passed, budget, local_error,
    # frontier_error
    reason: str
    task: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What the response and the metrics say about it."""
        return {"upstream": self.upstream, "reason": self.reason, "task": self.task,
                "failed_checks": self.failed_checks, "scores": self.scores}


def task_of(profile: RouteProfile, headers: dict[str, str], body: dict[str, Any]) -> str | None:
    """The request's task class: the rules' header, else ``metadata.<field>`` of the body."""
    if profile.rules is None:
        return None
    given = headers.get(profile.rules.header.lower())
    if given is None and isinstance(body.get("metadata"), dict):
        value = body["metadata"].get(profile.rules.metadata_field)
        given = value if isinstance(value, str) else None
    return given


def before_generation(profile: RouteProfile, task: str | None, prompt_tokens: int | None,
                      escalation_probability: float | None = None) -> Decision | None:
    """A decision that needs no local answer (rules, capacity, the prompt classifier's
    ``escalation_probability``), or None: ask the local model. A local decision here is final
    for a stream; a whole local answer is still judged by :func:`after_answer`."""
    rules = profile.rules
    if rules is not None:
        if task in rules.frontier:
            return Decision(FRONTIER, "rule", task)
        if task not in rules.local and rules.default == FRONTIER:
            return Decision(FRONTIER, "default", task)
    if profile.capacity and prompt_tokens is not None and prompt_tokens > profile.capacity.max_prompt_tokens:
        return Decision(FRONTIER, "capacity", task)
    if profile.prompt_classifier and escalation_probability is not None:
        frontier = escalation_probability >= profile.prompt_classifier.threshold
        upstream = FRONTIER if frontier else LOCAL
        return Decision(upstream, "classifier", task,
                        scores={"escalation_probability": escalation_probability})
    return None


def after_answer(profile: RouteProfile, checks: CheckSet, answer: str,
                 logprobs: list[dict[str, Any]] | None, task: str | None = None) -> Decision:
    """Judge the local answer: a failed check, then low confidence, escalate; else it stands."""
    failed = checks.failures(answer)
    scores = confidence_scores(logprobs) if profile.confidence else {}
    if failed:
        return Decision(FRONTIER, "check", task, failed, scores)
    if profile.confidence and scores[profile.confidence.score] < profile.confidence.threshold:
        return Decision(FRONTIER, "confidence", task, [], scores)
    return Decision(LOCAL, "passed", task, [], scores)
