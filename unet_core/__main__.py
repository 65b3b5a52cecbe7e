"""``python -m unet_core train|evaluate|predict``.

Chapter 5 (training) shows the commands.
"""

from unet_core.cli import main

raise SystemExit(main())
