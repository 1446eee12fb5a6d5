import sys

from vsphere_preemption.cli.main import main

sys.exit(main())
