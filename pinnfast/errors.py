"""The exception for bad input and the warning for things a user should know: the CLI prints either as one line."""


class PinnfastError(ValueError):
    """A problem with the user's input or configuration, described in one sentence."""


class PinnfastWarning(UserWarning):
    """Something the run can go on with but the user should see (an ignored column, a too-short run)."""


class TrainingDiverged(PinnfastError):
    """A non-finite loss: training stopped, the last good checkpoint is kept."""
