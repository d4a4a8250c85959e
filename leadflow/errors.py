"""Exceptions that leadflow raises on purpose; each message names the value and the fix."""


class LeadflowError(Exception):
    """Base class: the command line prints these without a traceback and exits non-zero."""


class ConfigurationError(LeadflowError):
    """A setting is missing or invalid."""


class ImportFileError(LeadflowError):
    """A mailing-list file cannot be read as a whole (not a single bad row)."""


class StageTransitionError(LeadflowError):
    """A stage change that the funnel does not allow."""


class TemplateRenderError(LeadflowError):
    """An email template failed to render for one lead."""


class DeliveryError(LeadflowError):
    """A message was not delivered.

    `outcome` is the ledger status the message should get: `deferred` (try again
    later), `bounced` (the server rejected the recipient for good), `failed` (any
    other rejection) or `ambiguous` (the server may have accepted it).
    """

    def __init__(self, message: str, *, outcome: str, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.smtp_code = smtp_code


class CampaignError(LeadflowError):
    """A campaign cannot be launched as asked."""
