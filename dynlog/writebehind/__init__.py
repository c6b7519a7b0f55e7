"""Write-behind directories: a mount busy in a directory takes a lease on it (an event in the
directory's own journal), acknowledges that directory's operations at once, and commits them in
batched records from a flusher thread. See docs/ARCHITECTURE.md, "Write-behind directories".
"""

from .leases import Settings, WriteBehind

__all__ = ["Settings", "WriteBehind"]
