"""One registry per kind of thing (metrics, datasets, feature extractors, baselines), each
with the same lookup and the same "did you mean" error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from gmbench.core.errors import GmbenchError, did_you_mean

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what the entries are, for messages ("metric", "feature extractor").
        error: the exception class raised for an unknown name.
        listing: the command that lists the entries, named in the message.
    """

    def __init__(self, kind: str, *, error: type[GmbenchError] = GmbenchError,
                 listing: str | None = None) -> None:
        self.kind, self.error, self.listing = kind, error, listing
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        assert name not in self._entries, f"{self.kind} {name} registered twice"
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``; the registry's error, with a suggestion, otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            listed = f" Run `{self.listing}` to list them." if self.listing else \
                f" Known: {', '.join(self._entries)}."
            raise self.error(f"Unknown {self.kind} '{name}'."
                             f"{did_you_mean(name, self._entries)}{listed}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def values(self) -> Iterator[T]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
