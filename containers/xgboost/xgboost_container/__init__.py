"""The XGBoost container: SageMaker XGBoost's training and serving contract on serving_common."""
