"""A guest cannot chat under a name that reads like a registered user's, on SQLite and PostgreSQL."""

from __future__ import annotations

import disarm
import pytest

from chatroom.names import name_keys

from .helpers import ServerProcess

TAKEN = "name taken: it belongs to a registered user, who must log in to use it"
INVALID = "invalid name: use 1-32 printable characters"

# Each beside the registered user "admin" or "Élodie".
IMPOSTORS = {
    "élodie": "another case of an accented letter",
    "Elodie": "without the accent",
    "ＥＬＯＤＩＥ": "fullwidth capitals",
    "ａｄｍｉｎ": "fullwidth",
    "\u0430dmin": "Cyrillic a",
    "ADMIN": "capitals",
    "ADM\u0399N": "Greek capital iota for I",
    "ad\u200dmin": "a zero-width joiner",
    "a\u0301dmin": "a combining acute accent",
    "ad\u0336min": "a combining stroke",
}


def register(server: ServerProcess, *names: str) -> None:
    """Registered users of these names, created as the admin or a sign-up form would (``save()``)."""
    server.manage(
        "shell", "-c", f"from django.contrib.auth.models import User\nfor n in {names!r}: User(username=n).save()"
    )


def refusal(clients, server: ServerProcess, room: str, name: str) -> dict:
    """What a guest asking for ``name`` is told."""
    guest = clients(server.url, auth={"room": room, "name": name}, connect=False)
    assert guest.try_connect() is not None, f"{name!r} was let in"
    return guest.wait_for("connect_error")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own, with the registered users "admin" and "Élodie"."""
    process = ServerProcess(tmp_path_factory.mktemp("names")).start()
    register(process, "admin", "Élodie")
    yield process
    process.stop()


@pytest.mark.parametrize("name", IMPOSTORS, ids=IMPOSTORS.values())
def test_a_guest_cannot_take_a_name_that_reads_like_a_registered_users(server, clients, room, name):
    assert refusal(clients, server, room, name) == {"message": TAKEN}


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("Zoë", "Zoë"),
        ("Zoe\u0308", "Zoë"),  # the same, typed as e and a combining diaeresis
        ("李雷", "李雷"),
        ("Ｍａｒｉｅ", "Marie"),  # fullwidth forms shown as the letters they are
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # an emoji sequence joined by ZWJ
    ],
)
def test_other_names_are_welcome_and_shown_normalized(server, clients, room, typed, shown):
    guest = clients(server.url, auth={"room": room, "name": typed})
    assert guest.wait_for("welcome")["name"] == shown
    listener = clients.join(server.url, room, "listener")
    guest.say("hello")
    assert listener.wait_for("message")["name"] == shown


@pytest.mark.parametrize("name", ["ad\u202emin", "\u200d\u0301", "a\u2060b"], ids=["bidi", "nothing visible", "WJ"])
def test_invisible_tricks_are_invalid_names(server, clients, room, name):
    assert refusal(clients, server, room, name) == {"message": INVALID}


def test_a_renamed_user_gives_up_the_old_name_and_holds_the_new(server, clients, room):
    register(server, "margot")
    assert refusal(clients, server, room, "MARGOT") == {"message": TAKEN}
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "u = User.objects.get(username='margot'); u.username = 'root'; u.save()",
    )
    clients.join(server.url, room, "MARGOT")
    assert refusal(clients, server, room, "r\u043e\u043et") == {"message": TAKEN}  # Cyrillic o's


def test_the_check_is_one_indexed_query(server):
    plan = server.manage(
        "shell",
        "-c",
        "from chatroom.models import NameKey\nprint(NameKey.objects.filter(key__in=['admin', 'admln']).explain())",
    )
    assert "chatroom_namekey_key" in plan


def test_users_registered_before_the_upgrade_are_keyed_by_its_migration(tmp_path, clients, room):
    server = ServerProcess(tmp_path)
    server.manage("migrate", "--verbosity", "0")
    server.manage("migrate", "chatroom", "0001", "--verbosity", "0")  # as the database was before names had keys
    # bulk_create sends no post_save: nothing but the migration keys this user.
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\nUser.objects.bulk_create([User(username='Élodie')])",
    )
    server.start()  # run_example.py migrates
    try:
        assert refusal(clients, server, room, "ELODIE") == {"message": TAKEN}
    finally:
        server.stop()


def test_postgres_compares_names_the_same_way(fresh_server, postgres, clients, room):
    server = fresh_server(DATABASE_URL=postgres.create_database())
    register(server, "Élodie")
    for name in ("élodie", "ＥＬＯＤＩＥ", "\u0415lodie"):  # the last with a Cyrillic E
        assert refusal(clients, server, room, name) == {"message": TAKEN}
    assert clients(server.url, auth={"room": room, "name": "Zoë"}).wait_for("welcome")["name"] == "Zoë"


@pytest.mark.parametrize(
    ("one", "other"),
    [("admin", "ａｄｍｉｎ"), ("paypal", "paypaI"), ("ADMIN", "admin"), ("john", "j0hn"), ("Straße", "STRASSE")],
)
def test_look_alikes_share_a_key(one, other):
    assert name_keys(one) & name_keys(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("admin", "admln"), ("कुल", "कल"), ("かばん", "かはん"), ("李雷", "李電"), ("bob", "rob")],
)
def test_different_names_share_no_key(one, other):
    # Marks of a script are part of its letters (a Devanagari vowel sign, the kana voicing mark).
    assert not name_keys(one) & name_keys(other)


def test_the_stored_keys_are_those_of_the_pinned_disarm():
    # Registered users' keys are stored: a disarm whose keys differ needs a migration that re-keys
    # them (as 0002 keyed the first ones) along with the new pin and this number.
    assert disarm.KEY_SCHEMA_VERSION == 10
