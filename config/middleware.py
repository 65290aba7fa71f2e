"""Requests no view should see."""

from django.http import HttpResponseBadRequest, JsonResponse

NUL_MESSAGE = "NUL characters (\\x00) are not allowed in the query string."


class RejectNulCharacters:
    """400 for a query string holding a NUL character.

    PostgreSQL refuses NUL in any string parameter, so a search for "a\\x00b" would reach
    the database and fail there as a server error; SQLite would take it. Refusing it here
    gives one clear answer on every page and API view, on every database.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or any("\x00" in v for v in values)
               for key, values in request.GET.lists()):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": NUL_MESSAGE}, status=400)
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain")
        return self.get_response(request)
