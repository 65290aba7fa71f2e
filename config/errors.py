"""Error pages: a styled page for people, the API's JSON error shape under /api/."""

from django.http import JsonResponse
from django.views import defaults


def _api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    if _api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # templates/500.html stands alone: no database, no context processors, no base.html.
    if _api(request):
        return JsonResponse({"detail": "Server error: the request could not be completed."},
                            status=500)
    return defaults.server_error(request)
