"""Admin fixtures: the roles as ``setup_roles`` makes them, and a logged-in user of each."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client


def staff_in(group: str, username: str) -> Any:
    call_command("setup_roles", stdout=io.StringIO())
    user = get_user_model().objects.create_user(username=username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def analyst(db: None) -> Any:
    return staff_in("risk_analyst", "analyst")


@pytest.fixture
def analyst_client(analyst: Any) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


@pytest.fixture
def ops_client(db: None) -> Client:
    client = Client()
    client.force_login(staff_in("ops", "ops"))
    return client


@pytest.fixture
def superuser_client(db: None) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))
    return client
