"""The PyTorch container: serves TorchScript (and, through model_fn, eager) models; trains scripts."""
