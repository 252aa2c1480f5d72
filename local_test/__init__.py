"""Local smoke runs of the containers (SageMaker Python SDK local mode comes with the pipeline work)."""
