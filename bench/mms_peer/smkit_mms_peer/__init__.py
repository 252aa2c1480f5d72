"""The peer of bench/mms.py: an XGBoost model behind multi-model-server and AWS's sagemaker-inference toolkit,
written the way the toolkit's README tells users to. Runs only inside the peer image (bench/mms_peer/)."""
