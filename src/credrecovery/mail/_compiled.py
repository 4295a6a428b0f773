"""The compiled templates every renderer in the process shares."""

from __future__ import annotations

import collections
import threading

import jinja2
from jinja2.bccache import Bucket

__all__ = ["_COMPILED", "_CompiledTemplates"]


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every renderer in the process, newest 256 kept.

    Each service has environments of its own, and compiling the templates
    again for each costs about a tenth of a second. Jinja2 checks an entry
    against the template's source before using it, so an edited or
    overriding template is compiled afresh. Every environment here is built
    with the same options, which the compiled code depends on.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._entries.get(bucket.key)
            if data is not None:
                self._entries.move_to_end(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._entries[bucket.key] = data
            self._entries.move_to_end(bucket.key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_COMPILED = _CompiledTemplates()
