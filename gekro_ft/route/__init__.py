"""The hybrid router: the local adapter first, the frontier API on doubt, escalations logged for the next training."""
