"""Errors of the dataset build / publish / load tools. All are ``ValueError``s a user can act on."""

from __future__ import annotations


class HubToolsError(ValueError):
    """Base class: bad input, an invalid build, a refused version or a failed publish."""


class BuildError(HubToolsError):
    """The input folder cannot be turned into a dataset (no images, unknown labels, ...)."""


class ValidationError(HubToolsError):
    """A build folder does not hold a publishable dataset (schema, empty split, mask size...)."""


class VersionError(HubToolsError):
    """A version string is malformed, already published or not above the latest version."""


class PublishError(HubToolsError):
    """A push did not complete; the message says what is left to do (usually: run it again)."""


class CredentialsError(HubToolsError):
    """The Hub refused the token (401: invalid or expired) or what it may do (403: no write access
    to the repo or its organisation). Running the same command again cannot succeed: the message
    says what to change and what the Hub holds so far."""


class StaleParentError(PublishError):
    """The repository moved while a push was being prepared (someone else committed)."""


class DatasetNotFoundError(HubToolsError):
    """A dataset repository (or the version asked for) does not exist or is not readable with the
    credentials given: the Hub answers both the same way, so that private names do not leak."""


class VisibilityError(HubToolsError):
    """A push would publish with another visibility than asked (``--private`` on a public repo)."""


class RepoIdError(HubToolsError):
    """A repository id that is not ``ORG/NAME`` as the Hub spells them (a typo, a pasted URL)."""
