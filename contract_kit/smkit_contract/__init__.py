"""smkit-contract: does a Docker image honour the SageMaker container contract? (stdlib + the docker CLI)"""

__version__ = "0.1.0"
