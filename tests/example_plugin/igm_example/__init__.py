"""An example third-party IGM plugin package."""
