"""Sub-commands of the ``petct`` CLI; each module exposes ``register(subparsers)``."""
