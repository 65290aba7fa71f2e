"""The account pages beside Django's login: the API token, and logging out with a word.
Also the rule that a new password revokes the API token, however the user is saved."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token


@login_required
@require_http_methods(["GET", "POST"])
def api_token(request):
    """GET: your API token (none until you make one). POST: a new token; the old one stops
    working at once."""
    if request.method == "POST":
        replaced = replace_token(request.user)
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


def replace_token(user, only_if_one=False) -> bool:
    """A new API token for the user; the old one, if any, stops working at once. Whether
    there was one. With only_if_one, a user without a token is left without."""
    with transaction.atomic():
        replaced = Token.objects.filter(user=user).delete()[0] > 0
        if replaced or not only_if_one:
            Token.objects.create(user=user)
    return replaced


def stores_a_new_password(user, update_fields=None) -> bool:
    """Whether saving the user stores a new password: set_password was called (the password
    change page, the admin's, ``changepassword``, code), or the password was made unusable.
    Django re-hashing the same password at login, for a stronger hasher, is no new password:
    it does not go through set_password's record of the raw password."""
    if update_fields is not None and "password" not in update_fields:
        return False
    if getattr(user, "_password", None) is not None:
        return True
    if user.pk is None or user.has_usable_password():
        return False
    stored = type(user)._default_manager.filter(pk=user.pk).values_list("password", flat=True)
    return stored.first() not in (None, user.password)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def _note_a_new_password(sender, instance, update_fields=None, raw=False, **kwargs):
    instance._revokes_api_token = (not raw and instance.pk is not None
                                   and stores_a_new_password(instance, update_fields))


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _rotate_the_api_token(sender, instance, created, **kwargs):
    """A new password revokes the API token that the old one could have shown: a thief who
    had the password, or the token, keeps neither. A user with a token gets a new one (on
    the token page)."""
    if getattr(instance, "_revokes_api_token", False) and not created:
        instance._revokes_api_token = False
        replace_token(instance, only_if_one=True)
