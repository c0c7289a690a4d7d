"""Organized point clouds: background removal, sampling, grouping, and projection to image grids."""
