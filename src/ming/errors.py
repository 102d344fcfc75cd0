"""User-facing errors: each says what is wrong, what was found, and what to do next."""


class MingError(Exception):
    """An error the CLI prints without a traceback (exit code 2)."""


class ModelNotFoundError(MingError):
    pass


class TemplateError(MingError):
    pass


class BackendUnavailableError(MingError):
    pass
