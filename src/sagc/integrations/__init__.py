"""Training-framework integrations of sagc.

Each integration lives in its own subpackage and imports its framework lazily, so `import sagc`
never pulls in torch:

    from sagc.integrations.trl import SAGCGRPOTrainer   # needs the [trl] extra

See docs/trl.md for the TRL integration.
"""

__all__: list[str] = []
