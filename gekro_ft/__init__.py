"""gekro-ft: the fine-tuning toolkit — data, train, eval, serve, cost."""

__version__ = "0.1.0"
