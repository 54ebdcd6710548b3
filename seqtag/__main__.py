import sys

from seqtag.cli.app import main

sys.exit(main())
