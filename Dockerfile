# One image for every newsflow service; compose picks the service by its command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p shared services && touch shared/__init__.py services/__init__.py \
    && pip install . && pip uninstall -y newsflow

COPY shared ./shared
COPY services ./services
RUN pip install --no-deps . \
    && python -c "import services.enricher.enrich, services.parser.extract, services.fetcher.fetch"

USER nobody
ENTRYPOINT ["newsflow"]
CMD ["--help"]
