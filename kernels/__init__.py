"""Tile-blend kernels: the NumPy reference and (later) native C++/CUDA implementations."""
