"""Errors a service raises for the user to act on; their message is shown as is."""


class ServiceError(Exception):
    """Base class: the message is safe and useful to show to the user."""


class NotFound(ServiceError):
    pass


class StaleLead(ServiceError):
    """Someone else changed the lead after this user loaded it."""


class InvalidInput(ServiceError):
    """Input that breaks a rule; `field` names where the user typed it. A form checked as a whole
    reports every bad field at once in `errors` (field -> message; the first is `field`, `message`)."""

    def __init__(self, message: str, field: str | None = None, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.errors = errors or ({field: message} if field else {})

    @classmethod
    def of_fields(cls, errors: dict[str, str]) -> "InvalidInput":
        """Every bad field of a form (at least one)."""
        field, message = next(iter(errors.items()))
        return cls(message, field=field, errors=errors)


class Forbidden(ServiceError):
    """The acting user's role does not allow this; refused, not just hidden."""


class SignInRefused(ServiceError):
    """Wrong email or password, a throttled email, or an expired session."""


class NotSignedIn(ServiceError):
    """No valid session: the browser goes to the sign-in page."""


class Conflict(ServiceError):
    """The change collides with data that exists (a duplicate the user may not see, a key reused
    for another request); `field` names what collides."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidFields(ServiceError):
    """Several inputs are wrong at once (a batch): `errors` is a list of (field path, message)."""

    def __init__(self, message: str, errors: list[tuple[str, str]]):
        super().__init__(message)
        self.errors = errors


class MissingFields(InvalidFields):
    """Inputs that name something that does not exist (or that the user may not see)."""
