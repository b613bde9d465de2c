"""Errors a service raises for the user to act on; their message is shown as is."""


class ServiceError(Exception):
    """Base class: the message is safe and useful to show to the user."""


class NotFound(ServiceError):
    pass


class StaleLead(ServiceError):
    """Someone else changed the lead after this user loaded it."""


class InvalidInput(ServiceError):
    """Input that breaks a rule; `field` names where the user typed it."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class Forbidden(ServiceError):
    """The acting user's role does not allow this; refused, not just hidden."""


class SignInRefused(ServiceError):
    """Wrong email or password, a throttled email, or an expired session."""


class NotSignedIn(ServiceError):
    """No valid session: the browser goes to the sign-in page."""
