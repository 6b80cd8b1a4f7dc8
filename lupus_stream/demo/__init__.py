"""Synthetic but realistic traffic for the example products, with injected incidents."""
