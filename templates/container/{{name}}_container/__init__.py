"""The {{name}} container: a least-squares linear model on numeric features (the template's example)."""
