"""``python -m unet_core train|evaluate|predict``."""

from unet_core.cli import main

raise SystemExit(main())
