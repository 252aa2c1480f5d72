"""``docker run IMAGE serve``: start multi-model-server through the toolkit and wait for it, as the toolkit's
README's entry point does. The toolkit writes MMS's config from the SageMaker environment
(SAGEMAKER_MODEL_SERVER_WORKERS -> default_workers_per_model, SAGEMAKER_BIND_TO_PORT -> the addresses,
SAGEMAKER_MODEL_SERVER_TIMEOUT, ...) and registers /opt/ml/model as the model "model"."""

from __future__ import annotations

import sys

from sagemaker_inference import model_server

HANDLER_SERVICE = "smkit_mms_peer.handler_service"


def main(argv: list[str]) -> int:
    if argv != ["serve"]:
        print(f"usage: serve (this image only serves; got {' '.join(argv) or 'nothing'})", file=sys.stderr)
        return 2
    model_server.start_model_server(handler_service=HANDLER_SERVICE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
