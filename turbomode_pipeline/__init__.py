"""TurboMode Pipeline: the trading research system as Dagster assets.

Importing the package keeps freed memory in the process for reuse (see core/allocator.py): the
feature engine's temporary arrays would otherwise page-fault afresh on every block.
"""

from turbomode_pipeline.core.allocator import keep_freed_memory

keep_freed_memory()
