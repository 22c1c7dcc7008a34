"""Exceptions raised by ouroboros.

Every error a user can cause derives from :class:`OuroborosError`; its message names the bad value and the valid
choices. The CLI turns these into exit code 2 and a one-paragraph message, never a traceback.
"""


class OuroborosError(Exception):
    """Base class for every error caused by bad input (exit code 2 on the command line)."""


class ConfigError(OuroborosError, ValueError):
    """A bad option, split, component name or composition."""


class BackboneError(OuroborosError):
    """A backbone that cannot be found, loaded or used (missing modules, hash mismatch)."""


class CheckpointError(OuroborosError):
    """A missing, corrupt or incompatible checkpoint folder."""


class DataError(OuroborosError):
    """A missing, empty or unknown dataset."""


class TrainingError(OuroborosError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""
