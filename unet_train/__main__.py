"""``python -m unet_train train|evaluate|predict``.

Chapter 5 (training) shows the commands.
"""

from unet_train.cli import main

raise SystemExit(main())
