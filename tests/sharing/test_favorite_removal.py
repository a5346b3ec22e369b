"""Issue 11: favorites could only be removed through the API. In the Share dialog each favorite
now has its own remove button ("Remove <name> from favorites"): with scripts it asks the REST
API (DELETE /api/v1/favorites/<id>/, session and CSRF token); without, it posts the dialog's
form, which answers the form as it was with the favorites shown without that one."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from sharing.models import Favorite, Share
from sharing.selectors import favorites_of
from sharing.services.favorites import add_favorite, remove_favorite
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage

pytestmark = pytest.mark.django_db

DIALOG = reverse("sharing:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


@pytest.fixture
def favorites(alice, bob, group):
    """alice's favorites: bob, then his Neuroradiology group."""
    bob_favorite, _new = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    group_favorite, _new = add_favorite(owner=alice, kind="group", target_id=group.pk)
    return bob_favorite, group_favorite


def client_for(user, **kwargs) -> HttpsClient:
    client = HttpsClient(**kwargs)
    client.force_login(user)
    return client


def names(user) -> list[str]:
    return [item.recipient.name for item in favorites_of(user)]


def remove_buttons(html: str) -> list[tuple[str, str]]:
    """(aria-label, value) of each favorite's remove button."""
    return [
        (unescape(label), value)
        for value, label in re.findall(
            r'<button type="submit" name="remove_favorite" value="(\d+)"[^>]*'
            r'aria-label="([^"]*)"',
            html,
        )
    ]


# --- The service -------------------------------------------------------------------------------


def test_removing_one_favorite_keeps_the_others(alice, favorites):
    bob_favorite, _group_favorite = favorites
    remove_favorite(owner=alice, favorite=bob_favorite)
    assert names(alice) == ["Neuroradiology"]


def test_a_removed_favorite_can_be_starred_again(alice, bob, favorites):
    remove_favorite(owner=alice, favorite=favorites[0])
    _favorite, created = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    assert created
    assert names(alice) == ["Neuroradiology", "Bob Tester"]


def test_nobody_removes_someone_elses_favorite(alice, dana, favorites):
    with pytest.raises(PermissionDenied):
        remove_favorite(owner=dana, favorite=favorites[0])
    assert Favorite.objects.filter(owner=alice).count() == 2


# --- The dialog --------------------------------------------------------------------------------


def test_each_favorite_has_a_remove_button_named_after_it(alice, favorites, study):
    response = client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    html = response.content.decode()
    bob_favorite, group_favorite = favorites
    assert remove_buttons(html) == [
        ("Remove Bob Tester from favorites", str(bob_favorite.pk)),
        ("Remove Neuroradiology from favorites", str(group_favorite.pk)),
    ]
    # What share.js asks instead of posting the form.
    assert f'data-url="/api/v1/favorites/{bob_favorite.pk}/"' in html


def edit_body(study, **extra) -> dict:
    return {"study": [study.study_uid], "reason": "Second opinion", **extra}


@pytest.mark.parametrize("headers", [FRAGMENT, {}], ids=["dialog", "page without scripts"])
def test_removing_a_favorite_without_scripts_keeps_the_form(alice, bob, favorites, study, headers):
    bob_favorite, group_favorite = favorites
    body = edit_body(
        study,
        **{
            "recipient-0-kind": "user",
            "recipient-0-target": str(bob.pk),
            "remove_favorite": str(bob_favorite.pk),
        },
    )
    response = client_for(alice).post(DIALOG, body, **headers)
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert names(alice) == ["Neuroradiology"]
    assert not Share.objects.exists()
    # The favorites stay open, without bob; what was typed is kept.
    assert 'id="share-favorites" data-share-favorites>' in html
    assert remove_buttons(html) == [
        ("Remove Neuroradiology from favorites", str(group_favorite.pk))
    ]
    assert f'name="recipient-0-target" value="{bob.pk}"' in html
    assert "Second opinion" in html
    # bob's row may be starred again.
    assert "data-share-is-favorite hidden" in html


def test_removing_the_last_favorite_says_there_are_none(alice, bob, study):
    favorite, _new = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    body = edit_body(study, remove_favorite=str(favorite.pk))
    html = unescape(client_for(alice).post(DIALOG, body, **FRAGMENT).content.decode())
    assert remove_buttons(html) == []
    assert re.search(r"<p class=\"hint\" data-share-favorites-empty>\s*No favorites yet", html)


@pytest.mark.parametrize("value", ["someone else's", "gone", "junk", "0", "99999999999999"])
def test_a_favorite_that_is_not_the_senders_is_left_alone(
    alice, bob, dana, favorites, study, value
):
    danas, _new = add_favorite(owner=dana, kind="user", target_id=bob.pk)
    gone = Favorite.objects.create(owner=alice, kind="user", user=dana)
    gone_pk = gone.pk
    gone.delete()
    values = {"someone else's": str(danas.pk), "gone": str(gone_pk)}
    body = edit_body(study, remove_favorite=values.get(value, value))
    response = client_for(alice).post(DIALOG, body, **FRAGMENT)
    assert response.status_code == 200
    assert Favorite.objects.filter(pk=danas.pk).exists()
    assert names(alice) == ["Bob Tester", "Neuroradiology"]


def test_the_dialogs_removal_needs_the_csrf_token(alice, favorites, study):
    client = client_for(alice, enforce_csrf_checks=True)
    body = edit_body(study, remove_favorite=str(favorites[0].pk))
    assert client.post(DIALOG, body, **FRAGMENT).status_code == 403
    assert Favorite.objects.filter(owner=alice).count() == 2


# --- The REST API, as share.js uses it ---------------------------------------------------------


def test_the_api_removes_a_favorite_with_the_sessions_csrf_token(alice, favorites, study):
    client = client_for(alice, enforce_csrf_checks=True)
    html = client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT).content.decode()
    # The cookie is HttpOnly: the script sends the form's own token.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    url = f"/api/v1/favorites/{favorites[0].pk}/"
    same_origin = {"HTTP_REFERER": "https://testserver/studies/"}
    assert client.delete(url, **same_origin).status_code == 403  # no token: refused
    response = client.delete(url, HTTP_X_CSRFTOKEN=token, **same_origin)
    assert response.status_code == 204
    assert names(alice) == ["Neuroradiology"]
    # Already gone (another tab): 404, which the script treats as done.
    assert client.delete(url, HTTP_X_CSRFTOKEN=token, **same_origin).status_code == 404


def test_the_api_never_removes_someone_elses_favorite(alice, dana, favorites):
    client = HttpsAPIClient()
    client.force_authenticate(dana)
    assert client.delete(f"/api/v1/favorites/{favorites[0].pk}/").status_code == 404
    assert Favorite.objects.filter(owner=alice).count() == 2
