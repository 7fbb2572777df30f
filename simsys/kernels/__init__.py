"""Numba kernels: pure functions over typed arrays, compiled once and cached.

Nothing in this package imports from the rest of simsys; the Python wrappers that call these
kernels validate their inputs, so the kernels check nothing.
"""
