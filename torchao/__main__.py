import sys

from torchao.cli import main

sys.exit(main())
