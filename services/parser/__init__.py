"""The parser."""
