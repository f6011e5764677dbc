"""TurboMode Pipeline: the trading research system as Dagster assets.

Importing the package keeps freed memory in the process for reuse (see core/allocator.py): the
feature engine's temporary arrays would otherwise page-fault afresh on every block.
"""

import warnings

from turbomode_pipeline.core.allocator import keep_freed_memory

keep_freed_memory()
# Dagster's own sensor decorator passes `owners` to SensorDefinition and warns about it in every
# process that loads the code location; nothing of ours sets it. By message, so no other beta
# warning is hidden (the category lives in dagster, which this package must not import first).
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition\.__init__` is currently in beta")

from turbomode_pipeline.partition_errors import install  # noqa: E402

install()
