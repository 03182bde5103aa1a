"""Django middleware of our own: the pages' answer when PostgreSQL is unreachable."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

logger = logging.getLogger(__name__)

_PAGE = (b"<!doctype html><title>FlashBid: temporarily unavailable</title>"
         b"<h1>Temporarily unavailable</h1><p>The database is unreachable. Bidding goes on; "
         b"please try this page again in a few seconds.</p>")


class DatabaseUnavailableMiddleware:
    """A view that needs PostgreSQL while it is down answers 503 with Retry-After, not a 500.
    (The API's own handler does the same in the contract's JSON body: flashbid/api.py.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unavailable on %s: %s", request.path, exception)
            return HttpResponse(_PAGE, status=503, headers={"Retry-After": "5"})
        return None
