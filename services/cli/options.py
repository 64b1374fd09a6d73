"""The search words and filters as CLI options: one definition for `newsflow search` and
`newsflow watch add` (a watch is a saved search)."""

from datetime import datetime
from typing import Annotated

import typer

Query = Annotated[str, typer.Argument(help='Words, "phrases", -exclusions, OR.')]
Language = Annotated[str | None, typer.Option(help="ISO 639-1 code, e.g. en.")]
Source = Annotated[str | None, typer.Option(help="Site host, e.g. example.com.")]
Entity = Annotated[str | None, typer.Option(help="A person, organisation or place.")]
Person = Annotated[str | None, typer.Option(help="A person named in the article.")]
Organization = Annotated[str | None, typer.Option(help="An organisation named.")]
Place = Annotated[str | None, typer.Option(help="A place named in the article.")]
Credit = Annotated[str | None, typer.Option(
    help="An organisation credited with the story, e.g. dpa, Reuters (wire copy).")]
Country = Annotated[str | None, typer.Option(help="ISO 3166 code, e.g. IR.")]
Day = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])]
