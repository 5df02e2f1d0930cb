"""The train stage: preflight, prepared data, backends (unsloth, hf), tracking, the run itself."""
