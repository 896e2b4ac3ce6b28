"""The built-in IGM plugins, registered through entry points like any other."""
