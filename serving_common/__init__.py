"""Shared core of every container: SageMaker contract, HTTP serving, content types, training harness."""

__version__ = "0.1.0"
