# The PyTorch image's own serving-image steps (spliced into ../Dockerfile by build.sh): the example training
# script that `train` runs without a user script, the multi-model label and the torch variant.
COPY containers/pytorch/examples /opt/program/examples
RUN /opt/venv/bin/python -m compileall -q /opt/program/examples
ARG TORCH_VARIANT=cpu
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true \
      smkit.torch-variant=${TORCH_VARIANT}
