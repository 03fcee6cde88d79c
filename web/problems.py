"""RFC 9457 problem details, the API's one shape of error: `application/problem+json` with
`type`, `title`, `status` (the HTTP status code), `detail`, and extensions where a client
can act on them (a refused action's `referral_status` and `allowed_actions`)."""

from typing import Any

from fastapi.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"
API_PREFIX = "/v1"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions or {}

    def response(self) -> JSONResponse:
        return problem_response(
            self.status, self.title, self.detail, headers=self.headers, extensions=self.extensions
        )


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """Extensions never replace the standard members."""
    body = {**(extensions or {}), "type": "about:blank", "title": title, "status": status}
    return JSONResponse(
        {**body, "detail": detail}, status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(f"{API_PREFIX}/")
