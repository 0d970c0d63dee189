"""The errors the tool knows how to report: each carries its exit code.

Exit codes are one contract for the whole tool (README, "Exit codes"):
0 success, 1 quality regression, 2 bad input (config, data, options), 3 failure during the run.
"""


class DaeReportError(Exception):
    """Base class: a message meant for the user, and the exit code that goes with it."""

    exit_code = 3


class QualityRegression(DaeReportError):
    """The run finished but a metric regressed past its threshold."""

    exit_code = 1


class BadInput(DaeReportError):
    """Something the user gave us is wrong; nothing was run."""

    exit_code = 2


class ConfigError(BadInput):
    """A config file, --set override or option is unknown, mistyped or out of range."""


class DataError(BadInput):
    """The Fashion-MNIST files are missing, truncated, altered or cannot be read."""


class OutputError(BadInput):
    """The output folder cannot be created or written."""


class RunError(DaeReportError):
    """A stage failed while running (notebook cell, training, rendering)."""

    exit_code = 3
