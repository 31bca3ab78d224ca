"""DeepInPy-format HDF5 data: reading, writing, the embedded sample, transforms and splits."""
