"""Installed framework releases, read once: the one rule every adapter's seam branches on.

An adapter's seam module (``hpcallbacks_keras/_seam.py``, ``hpcallbacks_lightning/_seam.py``,
``hpcallbacks_hf/_seam.py``) computes its version flags at import from these helpers, the way
Lightning's ``lightning/fabric/utilities/imports.py`` does (``_TORCH_GREATER_EQUAL_2_4``): one line
per flag, compared as release tuples, never by ``try/except AttributeError`` around behaviour.
Reading a distribution's metadata imports nothing, so the core stays framework-free.

>>> release("3.10.0") >= (3, 8)
True
>>> release("2.6.0.post0"), release("4.47.1"), release("2.18.0rc1")
((2, 6, 0), (4, 47, 1), (2, 18, 0))
"""
from __future__ import annotations

import re
from importlib import metadata

__all__ = ["at_least", "installed", "release", "requires"]


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"2.5.1.post0"`` -> ``(2, 5, 1)``.

    Pre-release, post-release, dev and local parts are dropped (``"2.18.0rc1"`` -> ``(2, 18, 0)``):
    a flag compares releases, and a release candidate is treated as its release.
    """
    parts: list[int] = []
    for piece in version.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):  # "0rc1", "1post0": the number ends the release
            break
    return tuple(parts)


def installed(distribution: str) -> tuple[int, ...] | None:
    """The installed release of a distribution (PyPI name), or None when it is not installed.

    >>> installed("surely-not-a-distribution-name") is None
    True
    """
    try:
        return release(metadata.version(distribution))
    except metadata.PackageNotFoundError:
        return None


def at_least(distribution: str, version: str) -> bool:
    """True when the distribution is installed at ``version`` or later (False when absent).

    >>> at_least("surely-not-a-distribution-name", "1.0")
    False
    """
    have = installed(distribution)
    return have is not None and have >= release(version)


def requires(feature: str, distribution: str, version: str) -> None:
    """Refuse a feature that needs a newer release: a ``ValueError`` naming the feature and the release.

    Called where a callback is built or at fit start, never in the middle of a run.

    >>> try:
    ...     requires("anything", "no-such-dist", "1.0")
    ... except ValueError as e:
    ...     print(e)
    anything needs no-such-dist>=1.0; installed: none. Upgrade it (pip install "no-such-dist>=1.0") or leave
    this feature out.
    """
    if at_least(distribution, version):
        return
    have = installed(distribution)
    shown = ".".join(map(str, have)) if have is not None else "none"
    raise ValueError(f"{feature} needs {distribution}>={version}; installed: {shown}. "
                     f'Upgrade it (pip install "{distribution}>={version}") or leave this feature out.')
