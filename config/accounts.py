"""The account pages beside Django's login: the API token, and logging out with a word."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token


@login_required
@require_http_methods(["GET", "POST"])
def api_token(request):
    """GET: your API token (none until you make one). POST: a new token; the old one stops
    working at once."""
    if request.method == "POST":
        with transaction.atomic():
            replaced = Token.objects.filter(user=request.user).delete()[0] > 0
            Token.objects.create(user=request.user)
        messages.success(request, "A new token was made; the old one no longer works."
                         if replaced else "Your token was made.")
        return redirect("api-token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "registration/token.html", {"token": token})


class LogoutView(auth_views.LogoutView):
    """Django's logout (POST only), then the login page saying so."""

    def post(self, request, *args, **kwargs):
        was_logged_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_logged_in:
            messages.info(request, "You are logged out.")
        return response
