"""The eval stage: generate with candidates and baselines on the same eval set, score, gate."""
