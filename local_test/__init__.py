"""Local runs of the containers through the SageMaker SDK's local mode, offline: the main job, helpers, report."""
