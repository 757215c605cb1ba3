"""Client-level differential privacy (DP-FedAvg): clipping and noise in the round, accounting."""
