"""Project exceptions. Every message says what was expected, what was found and what to do."""

from __future__ import annotations


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PipelineError(Exception):
    """Base class for every error this project raises on purpose."""


def internal_error(exc: BaseException) -> str:
    """A job's failure as its result (and so an alert) says it: our own errors' messages say what
    went wrong without quoting data; any other exception's text could quote it, so it is named by
    its type only (the text goes to the job's log)."""
    detail = f": {exc}" if isinstance(exc, PipelineError) else " (see the job log)"
    return f"internal error: {type(exc).__name__}{detail}"


class ConfigurationError(PipelineError):
    """Settings or command-line arguments are missing or inconsistent (exit code 2)."""


class ManifestError(ConfigurationError):
    """The batch manifest cannot be read or does not describe a batch."""


class ContractError(ConfigurationError):
    """A data contract file is malformed."""


class SchemaChangeError(ConfigurationError):
    """A contract removes or retypes a column a table already holds, and no migration was asked for."""


class CatalogError(PipelineError):
    """The Glue Data Catalog refused to register or update a table."""


class StorageError(PipelineError):
    """Reading or writing a local path or an S3 object failed."""


class InputFileError(PipelineError):
    """A raw input file cannot be used: missing, empty, wrong header, wrong delimiter or encoding.

    These are data problems, not internal errors: the job records them in the result as
    dataset-level errors and the batch status becomes FAILED.

    ``message`` never holds text taken from the file (it goes to alerts); what the file held
    (a header line, column names found) is in ``excerpt``, shortened, kept only in the result file.
    """

    def __init__(self, file: str, message: str, excerpt: str | None = None) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message
        self.excerpt = excerpt


class AccountingError(PipelineError):
    """Rows read != rows valid + rows quarantined + duplicates collapsed: rows were lost."""


class ResultNotUsableError(PipelineError):
    """A validation result is missing or not SUCCEEDED, so the transform must not run."""
