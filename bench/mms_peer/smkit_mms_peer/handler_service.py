"""The handler service multi-model-server loads (``default_service_handler``): it must define exactly one
class, whose ``initialize`` loads the model and whose ``handle`` answers each request."""

from __future__ import annotations

from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer

from smkit_mms_peer.inference_handler import XGBoostInferenceHandler


class HandlerService(DefaultHandlerService):
    """The toolkit's ``DefaultHandlerService`` around a ``Transformer`` of the XGBoost inference handler."""

    def __init__(self) -> None:
        super().__init__(transformer=Transformer(default_inference_handler=XGBoostInferenceHandler()))
