import sys

from daysuntil import main

sys.exit(main())
