"""The toolkit's version, at the ground floor so any module can record it without importing the package API."""

__version__ = "0.1.0"
