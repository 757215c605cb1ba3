"""Image classification data held in memory as uint8 arrays (see `source`)."""
