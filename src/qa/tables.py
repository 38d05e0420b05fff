"""Read-only tables a build writes once and every server worker maps: arrays (`.npy`) and string tables.

A mapped file is paged in by the operating system as searches touch it and shared between all the processes that
open the same build, where a table rebuilt in each worker would be private to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class DamagedTable(ValueError):
    """A table file of a build is missing, truncated or inconsistent with the others."""


def mapped(path: Path) -> np.ndarray:
    """A saved array mapped read-only from its file rather than read (see the module's docstring)."""
    return np.asarray(np.load(path, mmap_mode="r"))


def mapped_bytes(path: Path) -> np.ndarray:
    """A file's bytes mapped read-only, as uint8 (an empty file gives an empty array: it cannot be mapped)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")


def string_hash(text: str) -> int:
    """A 64-bit hash of `text`, the same in every process (Python's own `hash` of a string is not)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def string_hashes(texts: Iterable[str]) -> np.ndarray:
    return np.fromiter((string_hash(t) for t in texts), dtype=np.uint64)


def write_blob(folder: Path, name: str, items: Iterable[bytes]) -> None:
    """`items` end to end in `<name>.bin`, and where each begins in `<name>.offsets.npy` (one more, the end)."""
    offsets = [0]
    with open(folder / f"{name}.bin", "wb") as f:
        for item in items:
            f.write(item)
            offsets.append(offsets[-1] + len(item))
    np.save(folder / f"{name}.offsets.npy", np.array(offsets, dtype=np.int64))


class Blob(Sequence[bytes]):
    """The items `write_blob` wrote, mapped: item i is read from the file only when asked for."""

    def __init__(self, folder: Path, name: str) -> None:
        self.data = mapped_bytes(folder / f"{name}.bin")
        self.offsets = mapped(folder / f"{name}.offsets.npy")
        if self.offsets.ndim != 1 or not len(self.offsets) or int(self.offsets[-1]) != len(self.data):
            raise DamagedTable(f"{name}.bin does not match {name}.offsets.npy")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()


class StringTable:
    """Distinct strings, each with a position, found by their 64-bit hash in a sorted array (no dict per process).

    `write` stores them in hash order; `position` of a string is its place in that order, -1 when absent (its
    hash found and the stored string compared, so a hash collision cannot be taken for the string).
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.strings = Blob(folder, name)
        self.hashes = mapped(folder / f"{name}.hashes.npy")
        if self.hashes.shape != (len(self.strings),) or self.hashes.dtype != np.uint64:
            raise DamagedTable(f"{name}.hashes.npy does not match {name}.bin")

    @staticmethod
    def write(folder: Path, name: str, strings: Sequence[str]) -> dict[str, int]:
        """Store distinct `strings`; the position of each."""
        hashes = string_hashes(strings)
        order = np.argsort(hashes, kind="stable")
        write_blob(folder, name, (strings[i].encode("utf-8") for i in order))
        np.save(folder / f"{name}.hashes.npy", hashes[order])
        return {strings[i]: position for position, i in enumerate(order.tolist())}

    def __len__(self) -> int:
        return len(self.strings)

    def __getitem__(self, position: int) -> str:
        return self.strings[position].decode("utf-8")

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.positions([text])[0] >= 0

    def positions(self, strings: Sequence[str]) -> np.ndarray:
        """The position of each of `strings` (int64), -1 for one the table does not hold."""
        hashes = string_hashes(strings)
        found = np.searchsorted(self.hashes, hashes)
        result = np.full(len(strings), -1, dtype=np.int64)
        for k, (text, h, at) in enumerate(zip(strings, hashes.tolist(), found.tolist())):
            while at < len(self.hashes) and int(self.hashes[at]) == h:
                if self[at] == text:
                    result[k] = at
                    break
                at += 1
        return result
