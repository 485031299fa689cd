"""The subscriber web app: subscribe, confirm, the preference center and unsubscribe.

`app.py` holds the factory and the route table, `views.py` the endpoints, `forms.py` body
parsing and CSRF, `limits.py` rate limits, `mail.py` the confirmation emails and
`server.py` what `newsletter serve` runs. Sits on top of the package: may import anything.
"""

from .app import ROUTES, create_app

__all__ = ["ROUTES", "create_app"]
