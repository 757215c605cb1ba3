"""Image classification data held in memory as uint8 arrays (types: `dataset`; loaders by name: `source`)."""
