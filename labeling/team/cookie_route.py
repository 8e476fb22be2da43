"""The HTTP route that turns a team sign-in into an HttpOnly cookie, and clears it at sign-out.

Served beside the app by ``asgi.py``, which imports only this module of the engine as the server starts
(starlette and :mod:`labeling.team.web_sessions`, no torch), so the server answers at once and the
project opens in the background. The route only moves a token between the page and the cookie jar:
it checks the token's shape, never its validity (every script run checks that in the engine,
``labeling.team.web_sessions.resume``). A page of another site cannot use it: it must send
:data:`HEADER`, which a browser sends across origins only after the server agrees (it never does here),
and a request whose ``Origin`` names another host is refused.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labeling.team import web_sessions as web_cookie


def _refused(request: Request) -> Response | None:
    if request.headers.get(web_cookie.HEADER) != "1":
        return JSONResponse({"error": f"missing {web_cookie.HEADER} header"}, status_code=403)
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return JSONResponse({"error": "cross-site request refused"}, status_code=403)
    return None


async def session_cookie(request: Request) -> Response:
    refused = _refused(request)
    if refused is not None:
        return refused
    response = Response(status_code=204)
    if request.method == "DELETE":
        response.delete_cookie(web_cookie.COOKIE, path="/", httponly=True, samesite="strict")
        return response
    try:
        body = await request.json()
        token = body.get("token") if isinstance(body, dict) else None
    except ValueError:
        token = None
    if not web_cookie.is_token(token):
        return JSONResponse({"error": "not a session token"}, status_code=400)
    response.set_cookie(web_cookie.COOKIE, token, max_age=int(web_cookie.SESSION_HOURS * 3600), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def routes() -> list[Route]:
    return [Route(web_cookie.ROUTE, session_cookie, methods=["POST", "DELETE"])]
