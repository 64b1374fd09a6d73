"""Security headers on every response of the API, errors included (an ASGI middleware)."""

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The search page loads its script and style from the API itself: nothing inline, nothing
# from elsewhere, no framing, no plugins; results link out, so navigation is not restricted.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
# /docs starts Swagger UI (served from the swagger-ui-bundle-v2 package, no CDN) with an inline
# script; that page echoes no input, so inline script there cannot carry anyone's payload.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
DOCS_PATHS = ("/docs",)

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    # Searches are in the URL: never send them to the sites the results link to.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the headers above (and the Content-Security-Policy for the path) to every HTTP
    response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else CSP
        wanted = (*HEADERS, (b"content-security-policy", csp.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in wanted if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class SecureFastAPI(FastAPI):
    """FastAPI with SecurityHeaders outermost: around Starlette's error middleware too, so that
    a 500 carries the headers as well (app.add_middleware would sit inside it)."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())
