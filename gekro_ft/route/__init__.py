"""The hybrid router: the local adapter first, the frontier API on doubt, escalations logged for the next training."""

# How long calibration waits for one local answer. A CPU engine on 2 shared cores takes minutes
# for a batch of answers; the suite's API-sized 60 s timed every request out (issue 24).
LOCAL_TIMEOUT_S = 600.0
