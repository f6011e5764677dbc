import sys

from turbomode_pipeline.cli import main

sys.exit(main())
