"""Who changed a tracked row (django-simple-history's ``get_user``).

The history middleware remembers each request; for an API request DRF replaces ``request.user`` with a
:class:`~reconciliation.api.authentication.Principal` (an API key, not a user), which the historical
row's user column cannot hold. Only a real user is recorded from the request; a service acting for an
API key sets ``_history_user`` (None) itself and names the key in the row's change reason.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model


def history_user(request: Any = None, **kwargs: Any) -> Any:
    user = getattr(request, "user", None)
    # isinstance sees through the SimpleLazyObject that AuthenticationMiddleware puts on the request.
    return user if isinstance(user, get_user_model()) and user.is_authenticated else None
