import sys

from dtseg.cli import main

sys.exit(main())
