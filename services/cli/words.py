"""How the CLI words what it counts: "1 story", "2 stories", "about 12,000 articles"."""


def plural(count: int, one: str, many: str) -> str:
    """ "1 story", "2 stories", "12,000 stories"."""
    return f"{count:,} {one if count == 1 else many}"
