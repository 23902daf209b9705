"""``python -m petct_pipeline`` is the ``petct`` command (what ``accelerate launch -m petct_pipeline ...`` runs)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
