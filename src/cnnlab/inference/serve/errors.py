"""How errors answer: 422 for any body the API cannot use, 415 for bytes that are no image, each one line of
`detail` and never the input echoed back."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.inference.decode import ImageError, NotAnImageError
from cnnlab.inference.numbers import NotANumberError

Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


async def unparsable_body(request: Request, error: Exception) -> Response:
    # Starlette and FastAPI answer 400 to a body they cannot parse (junk multipart, JSON nested too
    # deep for the parser, a second "file"); the API promises 422 for any body it cannot use.
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400:
        error = StarletteHTTPException(422, error.detail)
    return await http_exception_handler(request, error)


async def invalid_request(request: Request, error: Exception) -> Response:
    # FastAPI's own handler echoes each bad input, which fails to encode when it is JSON's Infinity or NaN
    # (Python's parser accepts them): where and what, without the input.
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": [{k: e[k] for k in ("loc", "msg", "type")} for e in error.errors()]}, 422)


def answer_with(status: int) -> Handler:
    """A handler answering `status` with the error's message as `detail`."""

    async def handler(request: Request, error: Exception) -> Response:
        return JSONResponse({"detail": str(error)}, status)

    return handler


async def not_a_number(request: Request, error: Exception) -> Response:
    # Ink that is not one line of digits: said so in a field the page can tell from other refusals.
    return JSONResponse({"detail": str(error), "not_a_number": True}, 422)


ERROR_HANDLERS: dict[int | type[Exception], Handler] = {
    StarletteHTTPException: unparsable_body,
    RequestValidationError: invalid_request,
    ImageError: answer_with(422),  # a blank image, too many pixels
    NotAnImageError: answer_with(415),
    NotANumberError: not_a_number,
}
