"""Joining the stages: the embedded demo (and, next, the configurable overnight pipeline)."""
