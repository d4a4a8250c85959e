"""`leadflow web`: the survey and unsubscribe pages behind the links in emails, and the intake webhooks."""

from leadflow.web.app import create_app

__all__ = ["create_app"]
