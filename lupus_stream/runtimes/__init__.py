"""Thin shells that move bytes in and out of the engine and the alert stage."""
