"""The project's settings, plus socket views that exist only to test the bridge."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls"
