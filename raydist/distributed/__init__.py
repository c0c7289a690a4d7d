"""The Ray layer: the only package that imports ``ray``. It calls the core; it adds no science."""
