"""The component kinds and the name rule, importable without torch (the CLI's start-up path)."""

import re

KINDS = ("controller", "modulation", "gate", "normalizer")
NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")
