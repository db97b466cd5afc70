"""Objects that fight back when the client converts them, shared by the hostile-input, fuzz and
property tests."""

import datetime as dt


class Raises:
    """An object whose every string conversion raises."""

    def __str__(self):
        raise RuntimeError("__str__ refused")

    def __repr__(self):
        raise RuntimeError("__repr__ refused")

    def __format__(self, spec):
        raise RuntimeError("__format__ refused")


class TextRaises(str):
    """A str whose str() raises."""

    def __str__(self):
        raise RuntimeError("__str__ refused")


class NumberRaises(int):
    """An int whose str() and repr() raise."""

    def __str__(self):
        raise RuntimeError("__str__ refused")

    def __repr__(self):
        raise RuntimeError("__repr__ refused")


class BrokenZone(dt.tzinfo):
    """A tzinfo whose every method raises."""

    def utcoffset(self, when):
        raise RuntimeError("utcoffset refused")

    def dst(self, when):
        raise RuntimeError("dst refused")

    def tzname(self, when):
        raise RuntimeError("tzname refused")
