"""lupus-stream: a streaming monitor for machine-learning products."""

__version__ = "0.1.0"
