# The XGBoost image's own serving-image steps (spliced into ../Dockerfile by build.sh): it serves
# multi-model endpoints.
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
