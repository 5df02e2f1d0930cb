"""The data stage: read any supported schema into one canonical conversation, check it, write it."""
