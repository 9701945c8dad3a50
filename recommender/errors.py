"""Exception tree of the recommender (see the package docstring)."""

from __future__ import annotations


class RecommenderError(Exception):
    """Root of every error the recommender raises on purpose."""

    retryable: bool = False


class InvalidArgument(RecommenderError):
    """A request the service cannot answer as asked (gRPC INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownContent(RecommenderError):
    """A content id the model has never seen (gRPC NOT_FOUND)."""

    def __init__(self, content_id: int) -> None:
        super().__init__(f"content {content_id} is not in the model")
        self.content_id = content_id


class ModelError(RecommenderError):
    """No usable model artifact: missing, incomplete or from an incompatible format."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class NoTrainingData(RecommenderError):
    """The store holds no viewing to learn from in the requested window."""

    def __init__(self, message: str, *, window: tuple[int, int] = (0, 0)) -> None:
        super().__init__(message)
        self.window = window
