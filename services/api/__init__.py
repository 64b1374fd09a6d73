"""The api."""
