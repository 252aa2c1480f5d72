"""The training harness shared by every image: SageMaker's training contract, failure file, metrics."""
