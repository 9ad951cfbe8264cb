"""The version every answer, header and document reports."""
__version__ = "0.1.0"
