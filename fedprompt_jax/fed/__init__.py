"""Federated learning: client sampling, aggregation and the training loop."""
