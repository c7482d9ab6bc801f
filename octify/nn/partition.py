"""Channel partitions: which channels of a plain tensor are high- and which low-frequency."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, Union

from ..utils.validate import check_alpha

__all__ = ["Partition", "low_channels", "parse_alpha"]

AlphaLike = Union[float, int, Sequence[float]]


def parse_alpha(alpha: AlphaLike) -> tuple[float, float]:
    """Normalise ``alpha`` (a float, or ``(alpha_in, alpha_out)``) to a validated pair."""
    if isinstance(alpha, (tuple, list)):
        if len(alpha) != 2:
            raise ValueError(f"alpha must be a float or a pair (alpha_in, alpha_out), found {len(alpha)} values: {alpha!r}")
        return check_alpha(alpha[0], "alpha_in"), check_alpha(alpha[1], "alpha_out")
    a = check_alpha(alpha, "alpha")
    return a, a


def low_channels(channels: int, alpha: float) -> int:
    """``floor(alpha * channels)`` without the float trap (0.29 * 100 is 28.999...)."""
    # Rounding the product to 9 decimals first absorbs representation error while keeping
    # every genuinely fractional product (channels < 1e9) below the next integer.
    return math.floor(round(alpha * channels, 9))


class Partition(NamedTuple):
    """A split of ``C`` channels into sorted ``high`` and ``low`` index tuples (Chen et al., 2019).

    The k-th channel of a pair's high tensor is channel ``high[k]`` of the equivalent plain
    tensor; likewise for low. Both tuples are sorted, disjoint, and together cover ``range(C)``.

    >>> Partition.split(8, 0.5)
    Partition(high=(0, 1, 2, 3), low=(4, 5, 6, 7))
    >>> Partition.split(8, 0.5, groups=2)   # per group: the last floor(alpha * C/groups) are low
    Partition(high=(0, 1, 4, 5), low=(2, 3, 6, 7))
    """

    high: tuple[int, ...]
    low: tuple[int, ...]

    @property
    def channels(self) -> int:
        return len(self.high) + len(self.low)

    @property
    def alpha(self) -> float:
        """Fraction of low-frequency channels."""
        return len(self.low) / self.channels if self.channels else 0.0

    @property
    def is_contiguous(self) -> bool:
        """True when the high channels come first and the low ones last (no reordering needed)."""
        return self.high == tuple(range(len(self.high)))

    @classmethod
    def split(cls, channels: int, alpha: float, groups: int = 1) -> "Partition":
        """The default split: in each of ``groups`` equal groups, the last ``floor(alpha * C/groups)`` are low.

        With ``groups=1`` that is the last ``floor(alpha * C)`` channels.
        """
        if channels < 0 or groups < 1 or channels % groups:
            raise ValueError(f"cannot split {channels} channels into {groups} equal groups")
        alpha = check_alpha(alpha, "alpha")
        per = channels // groups
        n_low = low_channels(per, alpha)
        high: list[int] = []
        low: list[int] = []
        for g in range(groups):
            base = g * per
            high.extend(range(base, base + per - n_low))
            low.extend(range(base + per - n_low, base + per))
        return cls(tuple(high), tuple(low))

    @classmethod
    def split_at(cls, channels: int, alpha: float, cuts: Sequence[int]) -> "Partition":
        """The default split of each range between ``cuts``: in each, the last ``floor(alpha * size)`` are low.

        >>> Partition.split_at(10, 0.5, (6,))   # ranges 0:6 and 6:10
        Partition(high=(0, 1, 2, 6, 7), low=(3, 4, 5, 8, 9))
        """
        alpha = check_alpha(alpha, "alpha")
        bounds = [0, *sorted(c for c in cuts if 0 < c < channels), channels]
        high: list[int] = []
        low: list[int] = []
        for start, end in zip(bounds, bounds[1:]):
            n_low = low_channels(end - start, alpha)
            high.extend(range(start, end - n_low))
            low.extend(range(end - n_low, end))
        return cls(tuple(high), tuple(low))

    @classmethod
    def all_high(cls, channels: int) -> "Partition":
        return cls(tuple(range(channels)), ())

    @classmethod
    def coerce(cls, value: "Partition | Sequence[Sequence[int]]", channels: int, what: str = "partition") -> "Partition":
        """Validate a user-supplied ``(high_indices, low_indices)`` pair for ``channels`` channels."""
        if isinstance(value, Partition):
            part = value
        else:
            try:
                high, low = value  # type: ignore[misc]
                part = cls(tuple(sorted(int(i) for i in high)), tuple(sorted(int(i) for i in low)))
            except (TypeError, ValueError):
                raise TypeError(
                    f"{what} must be a pair (high_indices, low_indices) of channel indices, found {value!r}"
                ) from None
        if sorted(part.high + part.low) != list(range(channels)):
            raise ValueError(
                f"{what} must cover channels 0..{channels - 1} exactly once, found "
                f"{len(part.high)} high + {len(part.low)} low indices: {part.high!r} / {part.low!r}"
            )
        if list(part.high) != sorted(part.high) or list(part.low) != sorted(part.low):
            raise ValueError(f"{what} indices must be sorted, found {part!r}")
        return part

    def low_per_group(self, groups: int) -> int | None:
        """Low channels per group if every group has the same count, else None."""
        if groups < 1 or self.channels % groups:
            return None
        per = self.channels // groups
        counts = [0] * groups
        for i in self.low:
            counts[i // per] += 1
        return counts[0] if all(c == counts[0] for c in counts) else None

    def concat(self, other: "Partition") -> "Partition":
        """The partition of ``torch.cat([a, b], dim=1)`` for pairs split by ``self`` and ``other``."""
        off = self.channels
        return Partition(self.high + tuple(i + off for i in other.high), self.low + tuple(i + off for i in other.low))

    def moved(self, target: "Partition") -> int:
        """Number of channels whose branch differs between ``self`` and ``target``."""
        return len(set(self.low) ^ set(target.low))
