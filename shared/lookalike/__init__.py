"""Lookalike: which celebrity do you resemble?  The library every service imports."""

__version__ = "0.1.0"
